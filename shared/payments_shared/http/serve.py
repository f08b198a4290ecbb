"""Serve an ASGI app with uvicorn inside the running event loop (so workers can share it), logging through the
process's JSON logging; returns when the server has shut down on SIGINT/SIGTERM, so the caller's clean-up runs.

(uvicorn's own signal capture re-raises the signal once the server has stopped, which would kill the process
before the caller closes its broker and store; `_Server` keeps the signal handled.)

A request that is not HTTP the parser accepts (a byte outside ASCII in the target, say) never reaches the app;
uvicorn answers it 400 in plain text, `_H11Protocol` in API.md's error shape.

uvicorn bounds neither how long a client may take to send a request nor how many connections stay open: a client
trickling its headers, or thousands that connect and send nothing, would hold sockets until the process runs out
of file descriptors (and every other client with it). `_H11Protocol` gives each request a deadline
(`HTTP_REQUEST_TIMEOUT_S`, counted from the connection's start or the previous answer) and closes connections past
a cap (`HTTP_MAX_CONNECTIONS`, by default the open-file limit less what the store, broker and logs need).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import time
from collections.abc import Iterator
from typing import Any, Final

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from payments_shared.errors import ApiError, invalid
from payments_shared.jsoncodec import dumps_bytes
from payments_shared.settings import CommonSettings

logger = logging.getLogger("payments_shared.http")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GC_THRESHOLDS: Final = (10_000, 50, 50)  # CPython's defaults: (700, 10, 10)
FILES_KEPT_FOR_THE_PROCESS: Final = 256  # event store, broker, log and provider sockets beside the HTTP clients
# asyncio accepts up to the listen backlog's worth of connections in one turn of the loop (uvicorn's default is
# 2048), and those past the cap are counted and closed only in the next turns: a burst from many clients at once
# runs a few backlogs past the cap before the first is closed.
ACCEPT_BACKLOG: Final = 128
ACCEPT_BURSTS_PAST_THE_CAP: Final = 4
REFUSAL_LOG_INTERVAL_S: Final = 60.0
# Once told to stop, requests in flight get at least this long to end, and longer when one may wait longer (a
# gateway's RPC_TIMEOUT_S, after which it answers 202): cut off, a client got a plain-text 500 for a charge made.
MIN_SHUTDOWN_GRACE_S: Final = 10.0
SHUTDOWN_MARGIN_S: Final = 2.0
# h11 states of the client's side once its request has arrived whole (or never will).
_REQUEST_IN: Final = frozenset({h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR, h11.SWITCHED_PROTOCOL})


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


class _Config(uvicorn.Config):
    def __init__(self, app: ASGIApp, request_timeout_s: float, max_connections: int, **options: Any) -> None:
        super().__init__(app, **options)
        self.request_timeout_s = request_timeout_s
        self.max_connections = max_connections


class _AcceptFailures(logging.Filter):
    """asyncio logs every accept() that fails for want of file descriptors, with a traceback, as often as the
    listening socket is ready (thousands a second): once a minute is enough to tell."""

    def __init__(self) -> None:
        super().__init__()
        self.logged_at = -REFUSAL_LOG_INTERVAL_S

    def filter(self, record: logging.LogRecord) -> bool:
        if "socket.accept() out of system resource" not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self.logged_at < REFUSAL_LOG_INTERVAL_S:
            return False
        self.logged_at = now
        return True


class _Refusals:
    """Connections closed at the cap, logged at most once a minute (a flood must not flood the log too)."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = -REFUSAL_LOG_INTERVAL_S

    def note(self, cap: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= REFUSAL_LOG_INTERVAL_S:
            logger.warning(
                "closing new connections: %d are open (the cap)", cap, extra={"closed_since_last": self.count}
            )
            self.logged_at, self.count = now, 0


_refusals = _Refusals()


class _H11Protocol(H11Protocol):
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            _refusals.note(self._limits.max_connections)
            transport.abort()
            return
        self._watch_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_request()

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(400, "Bad Request", invalid(msg, code="invalid_http_request"))

    @property
    def _limits(self) -> _Config:
        assert isinstance(self.config, _Config)
        return self.config

    def _watch_request(self) -> None:
        """Keep a deadline running while a request is awaited or arriving; none while it is being answered."""
        if self.conn.their_state in _REQUEST_IN or self.transport.is_closing():
            self._end_deadline()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(self._limits.request_timeout_s, self._request_timed_out)

    def _end_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state in _REQUEST_IN:
            return
        arriving = self.cycle is not None and not self.cycle.response_complete  # its body is still coming
        if not arriving and not self.conn.trailing_data[0]:
            self.transport.close()  # an idle connection: nothing to answer
            return
        logger.info("closing a connection whose request did not arrive within %gs", self._limits.request_timeout_s)
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        message = f"The request did not arrive whole within {self._limits.request_timeout_s:g} seconds."
        self._answer_and_close(408, "Request Timeout", invalid(message, code="request_timeout"))

    def _answer_and_close(self, status: int, reason: str, error: ApiError) -> None:
        """Written as bytes: h11 refuses to send a response to a request it has not (wholly) parsed."""
        body = dumps_bytes(error.body())
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65_536
    reserve = FILES_KEPT_FOR_THE_PROCESS + ACCEPT_BURSTS_PAST_THE_CAP * ACCEPT_BACKLOG
    return max(soft - reserve, soft // 4)


def shutdown_grace_s(longest_request_s: float) -> float:
    return max(MIN_SHUTDOWN_GRACE_S, longest_request_s + SHUTDOWN_MARGIN_S)


def server(
    app: ASGIApp, settings: CommonSettings, host: str = "0.0.0.0", longest_request_s: float = 0.0
) -> uvicorn.Server:
    config = _Config(
        app,
        request_timeout_s=settings.http_request_timeout_s,
        max_connections=settings.http_max_connections or default_max_connections(),
        http=_H11Protocol,
        host=host,
        port=settings.port,
        backlog=ACCEPT_BACKLOG,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=shutdown_grace_s(longest_request_s),
        server_header=False,
    )
    return _Server(config)


async def serve(app: ASGIApp, settings: CommonSettings, host: str = "0.0.0.0", longest_request_s: float = 0.0) -> None:
    """Serve until SIGINT/SIGTERM; `longest_request_s`: how long a request may wait for its answer (see
    MIN_SHUTDOWN_GRACE_S)."""
    settle_heap()
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(known, _AcceptFailures) for known in asyncio_logger.filters):
        asyncio_logger.addFilter(_AcceptFailures())
    await server(app, settings, host, longest_request_s).serve()


def settle_heap() -> None:
    """Once start-up is done: what exists now (modules, the app, the workers) lives as long as the process, so the
    cyclic collector stops walking it (gc.freeze), and collects less often: a request's objects are freed by
    reference counting, and the caches (decoded events, projections) would otherwise be walked again and again.
    Measured under load: collection time 4.8 s -> 0.3 s in a 50 s run, peak throughput +20 %."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
