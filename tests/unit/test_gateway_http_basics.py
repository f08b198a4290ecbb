"""The shared HTTP pieces (payments_shared.http) on a small app: body-size limit on declared and streamed
bodies, API.md's error shape for FastAPI's own errors and for unexpected exceptions, errors that always render,
correlation ids, readiness."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from payments_shared.errors import invalid
from payments_shared.http import health
from payments_shared.http.body_limit import MAX_BODY_BYTES, BodySizeLimit
from payments_shared.http.correlation import CorrelationIdMiddleware
from payments_shared.http.errors import install_error_handlers
from payments_shared.http.health import health_router
from payments_shared.logging import correlation_id


async def failing_check() -> None:
    raise ConnectionError("down")


async def passing_check() -> None:
    return None


def small_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(health_router({"store": passing_check, "broker": failing_check}))

    @app.post("/echo-size")
    async def echo_size(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail 4242424242424242")

    @app.get("/unencodable")
    async def unencodable() -> None:
        raise invalid("Unknown parameter \udfff.", param="\ud800")  # client text, lone surrogates included

    @app.get("/whoami")
    async def whoami() -> dict[str, str | None]:
        return {"correlation_id": correlation_id.get()}

    @app.get("/items/{number}")
    async def item(number: int) -> dict[str, int]:
        return {"number": number}

    app.add_middleware(BodySizeLimit)
    app.add_middleware(CorrelationIdMiddleware)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=small_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


async def test_body_at_the_limit_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo-size", content=b"x" * MAX_BODY_BYTES)
    assert response.json() == {"size": MAX_BODY_BYTES}


async def test_declared_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo-size", content=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_streamed_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"y" * 65536  # 2.5 MiB in all, no Content-Length

    response = await client.post("/echo-size", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_unexpected_error_is_a_generic_500(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "An unexpected error occurred."
    assert "secret detail" not in response.text
    assert "Traceback" not in response.text


async def test_an_error_echoing_text_utf8_cannot_carry_still_renders(client: httpx.AsyncClient) -> None:
    response = await client.get("/unencodable")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_request_error",
        "message": "Unknown parameter \ufffd.",
        "param": "\ufffd",
    }


async def test_path_validation_error_is_400_naming_the_param(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/abc")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "number"


async def test_correlation_id_is_set_and_echoed(client: httpx.AsyncClient) -> None:
    given = await client.get("/whoami", headers={"X-Request-Id": "abc-123"})
    assert given.json() == {"correlation_id": "abc-123"}
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/whoami", headers={"X-Request-Id": "bad id with spaces"})
    assert made.json()["correlation_id"] not in (None, "bad id with spaces")


async def test_a_check_that_hangs_is_reported_as_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hanging_check() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.05)
    app = FastAPI()
    app.include_router(health_router({"store": passing_check, "broker": hanging_check}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"store": "ok", "broker": "timed out"}


async def test_readiness_names_what_failed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"store": "ok", "broker": "ConnectionError"}
