"""Stopping a background task without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and return once it has ended, whatever it ended with (its error, if any, is dropped: the
    caller is stopping it). A cancel of the caller meanwhile propagates: `with suppress(CancelledError): await
    task` would take it for the task's own and swallow it, and the caller would go on as if never cancelled."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
