"""payments_shared.event_loop: what every service process's main coroutine runs on."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from payments_shared import event_loop


def test_runs_the_coroutine_on_uvloop_and_returns_its_result() -> None:
    async def main() -> tuple[type[asyncio.AbstractEventLoop], int]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()), 42

    loop_type, result = event_loop.run(main())

    assert result == 42
    assert issubclass(loop_type, uvloop.Loop)


def test_an_exception_in_the_coroutine_reaches_the_caller() -> None:
    async def main() -> None:
        raise LookupError("from inside the loop")

    with pytest.raises(LookupError, match="from inside the loop"):
        event_loop.run(main())
