"""A gate a fake holds a call at, to cancel its caller in the very tick the call completes: on Python 3.11,
asyncio.wait_for returned the result then and dropped the cancel."""

from __future__ import annotations

import asyncio
from typing import Any


class Gate:
    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._open: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def passing(self) -> None:
        """Awaited by the fake: returns once the test opens the gate."""
        self.reached.set()
        await self._open


async def cancel_as_the_gate_opens(caller: asyncio.Task[Any], gate: Gate) -> None:
    """Wait until `caller` is held at `gate`, then let the call complete and cancel `caller` in the same tick."""
    await gate.reached.wait()
    gate._open.set_result(None)
    caller.cancel()
