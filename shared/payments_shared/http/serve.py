"""Serve an ASGI app with uvicorn inside the running event loop (so workers can share it), logging through the
process's JSON logging; returns when the server has shut down on SIGINT/SIGTERM, so the caller's clean-up runs.

(uvicorn's own signal capture re-raises the signal once the server has stopped, which would kill the process
before the caller closes its broker and store; `_Server` keeps the signal handled.)

A request that is not HTTP the parser accepts (a byte outside ASCII in the target, say) never reaches the app;
uvicorn answers it 400 in plain text, `_H11Protocol` in API.md's error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Iterator
from typing import Final

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from payments_shared.errors import invalid
from payments_shared.jsoncodec import dumps_bytes

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GC_THRESHOLDS: Final = (10_000, 50, 50)  # CPython's defaults: (700, 10, 10)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for stop_signal in _STOP_SIGNALS:
            loop.add_signal_handler(stop_signal, self.handle_exit, stop_signal, None)
        try:
            yield
        finally:
            for stop_signal in _STOP_SIGNALS:
                loop.remove_signal_handler(stop_signal)


class _H11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = dumps_bytes(invalid(msg, code="invalid_http_request").body())
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def server(app: ASGIApp, port: int, host: str = "0.0.0.0") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http=_H11Protocol,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    return _Server(config)


async def serve(app: ASGIApp, port: int, host: str = "0.0.0.0") -> None:
    settle_heap()
    await server(app, port, host).serve()


def settle_heap() -> None:
    """Once start-up is done: what exists now (modules, the app, the workers) lives as long as the process, so the
    cyclic collector stops walking it (gc.freeze), and collects less often: a request's objects are freed by
    reference counting, and the caches (decoded events, projections) would otherwise be walked again and again.
    Measured under load: collection time 4.8 s -> 0.3 s in a 50 s run, peak throughput +20 %."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
