"""The ceilings `make bench` compares the real system against (bench/run.py starts these; not for production).

- `python -m bench.bare serve`: a minimal FastAPI app whose POST /api/v1/payments/charge parses the charge body
  with pydantic and answers 201 — the bare HTTP ceiling, served exactly like the real gateway
  (payments_shared.http.serve, same uvicorn settings).
- `python -m bench.bare rpc`: the same endpoint doing one request/reply over RabbitMQ (BROKER_URL) through the
  project's RabbitMQ adapter to `python -m bench.bare worker`, which answers at once — the broker ceiling.

PORT and BROKER_URL come from the environment, as for the services.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI
from payments_shared.broker.factory import open_broker
from payments_shared.broker.port import Broker, Message
from payments_shared.http.serve import serve
from payments_shared.settings import CommonSettings
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ECHO_QUEUE = "bench.echo"
CHARGE_PATH = "/api/v1/payments/charge"


class ChargeBody(BaseModel):
    """The charge body, validated as strictly as the gateway does it."""

    model_config = ConfigDict(strict=True, extra="forbid")

    amount: Annotated[int, Field(ge=1, le=99_999_999)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
    payment_method: Annotated[str, StringConstraints(min_length=1, max_length=255)]


def bare_app(broker: Broker | None) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(CHARGE_PATH, status_code=201)
    async def charge(body: ChargeBody) -> Mapping[str, Any]:
        data = body.model_dump()
        if broker is None:
            return {"object": "transaction", "status": "captured", **data}
        return await broker.request(ECHO_QUEUE, Message(body=data), timeout=10.0)

    return app


async def echo(message: Message) -> Mapping[str, Any]:
    return {"object": "transaction", "status": "captured", **message.body}


async def run(mode: str) -> None:
    settings = CommonSettings()  # PORT, BROKER_URL and the HTTP limits, read as the services read them
    broker_url = settings.broker_url
    if mode == "serve":
        await serve(bare_app(None), settings, host="127.0.0.1")
        return
    broker = await open_broker(broker_url)
    try:
        if mode == "rpc":
            await serve(bare_app(broker), settings, host="127.0.0.1")
        else:
            await broker.consume(ECHO_QUEUE, echo, prefetch=32)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for stop_signal in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(stop_signal, stop.set)
            await stop.wait()
    finally:
        await broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["serve", "rpc", "worker"])
    asyncio.run(run(parser.parse_args().mode))


if __name__ == "__main__":
    main()
