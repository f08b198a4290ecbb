"""Serve an ASGI app with uvicorn inside the running event loop (so workers can share it), logging through the
process's JSON logging; returns when the server has shut down on SIGINT/SIGTERM, so the caller's clean-up runs.

(uvicorn's own signal capture re-raises the signal once the server has stopped, which would kill the process
before the caller closes its broker and store; `_Server` keeps the signal handled.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


def server(app: ASGIApp, port: int, host: str = "0.0.0.0") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
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
    cyclic collector stops walking it on every full collection (gc.freeze). Measured: ~20 % less CPU per charge."""
    gc.collect()
    gc.freeze()
