"""Proof that the event loop keeps running while something waits: count 10 ms ticks of a background task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

TICK_S = 0.01


@dataclass
class Ticks:
    count: int = 0


@contextlib.asynccontextmanager
async def counting_ticks() -> AsyncIterator[Ticks]:
    ticks = Ticks()

    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK_S)
            ticks.count += 1

    ticker = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        ticker.cancel()
