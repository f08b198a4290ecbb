"""Items gathered during one turn of an event loop and handed over together at its end: the group commit of the
SQLite event store and of the sandbox ledger (one transaction, one fsync, for every write of the turn)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TurnBatches(Generic[T]):
    def __init__(self, flush: Callable[[asyncio.AbstractEventLoop, list[T]], None]) -> None:
        self._flush = flush
        self._open: dict[asyncio.AbstractEventLoop, list[T]] = {}  # each loop touches only its own entry

    def add(self, loop: asyncio.AbstractEventLoop, item: T) -> None:
        """`item` joins the loop's batch of this turn; the first one schedules the flush at the turn's end."""
        batch = self._open.get(loop)
        if batch is None:
            self._open[loop] = [item]
            loop.call_soon(self._close, loop)
        else:
            batch.append(item)

    def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush(loop, self._open.pop(loop))
