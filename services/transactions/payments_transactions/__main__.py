"""Services mode: the transactions worker as its own process, with only /healthz and /readyz on $PORT.

`python -m payments_transactions`; stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from fastapi import FastAPI
from payments_shared.broker.factory import open_broker
from payments_shared.eventstore.factory import open_event_store
from payments_shared.http.health import health_router
from payments_shared.http.serve import serve
from payments_shared.logging import configure, register_secret
from payments_shared.providers.registry import build_providers, close_providers
from payments_shared.providers.sandbox import SandboxSettings
from payments_shared.settings import ConfigError, load

from payments_transactions.main import start_transactions
from payments_transactions.settings import TransactionsSettings

logger = logging.getLogger("payments_transactions")


async def run(settings: TransactionsSettings, sandbox: SandboxSettings) -> None:
    store = open_event_store(settings.eventstore_uri)
    providers = build_providers(settings, settings.data_dir, sandbox)
    broker = await open_broker(settings.broker_url)
    try:
        worker = await start_transactions(broker, store, providers, settings)
        app = FastAPI(title="payments-transactions", docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(health_router({"broker": broker.ping, "eventstore": store.ping}))

        @app.get("/breakers")
        async def breakers() -> dict[str, dict[str, object]]:
            """Each provider's circuit breaker in this worker (state, failures, seconds to half-open)."""
            return worker.breakers()

        await serve(app, settings.port)
    finally:
        logger.info("transactions worker stopping")
        await broker.close()
        await close_providers(providers)
        await store.close()


def main() -> None:
    try:
        settings = load(TransactionsSettings)
        sandbox = load(SandboxSettings)
    except ConfigError as error:
        print(error.line, file=sys.stderr)
        raise SystemExit(2) from None
    configure(settings.log_level)
    for secret in (settings.stripe_api_key, settings.authnet_transaction_key):
        register_secret(secret)
    asyncio.run(run(settings, sandbox))


if __name__ == "__main__":
    main()
