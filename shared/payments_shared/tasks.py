"""Background tasks: stopping one without losing the caller's own cancellation; a sweep run every few seconds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and return once it has ended, whatever it ended with (its error, if any, is dropped: the
    caller is stopping it). A cancel of the caller meanwhile propagates: `with suppress(CancelledError): await
    task` would take it for the task's own and swallow it, and the caller would go on as if never cancelled."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


class PeriodicSweep:
    """Runs `sweep()` every `interval_s` in the background, from `start()` until `stop()`; a round that fails (the
    store may be down for a while) is logged and the next one tries again. An interval of 0 never starts it."""

    def __init__(self, name: str, interval_s: float, sweep: Callable[[], Awaitable[Any]]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._sweep = sweep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self._interval_s > 0:
            self._task = asyncio.create_task(self._forever(), name=self._name)

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._sweep()
            except Exception:
                logger.exception("%s failed", self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
