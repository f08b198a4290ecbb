"""tests/support/tcp_proxy.py's TcpProxy on an event loop of its own thread, so that synchronous tests (which
block in HTTP calls and process waits) can put it between services and RabbitMQ and cut it at will."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from tests.support.tcp_proxy import TcpProxy

T = TypeVar("T")


class ThreadedProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._proxy = TcpProxy(target_host, target_port)

    @property
    def port(self) -> int:
        return self._proxy.port

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def cut(self) -> None:
        self._run(self._proxy.cut())

    def restore(self) -> None:
        self._run(self._proxy.restore())

    def mute(self) -> None:
        self._proxy.mute()  # a flag the pumps read: setting it from this thread takes effect at once

    def unmute(self) -> None:
        self._proxy.unmute()

    def __enter__(self) -> ThreadedProxy:
        self._thread.start()
        self._run(self._proxy.start())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._run(self._proxy.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
