"""cancel_and_wait: the task has ended when it returns, and a cancel of the caller is never swallowed."""

from __future__ import annotations

import asyncio

import pytest
from payments_shared.tasks import cancel_and_wait


async def test_it_returns_once_the_task_has_ended_even_if_the_task_cleans_up_first() -> None:
    cleaned = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # clean-up that takes a moment
            cleaned.set()

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and cleaned.is_set()


async def test_a_task_that_failed_or_finished_is_fine() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(failed)  # its error is dropped: the caller is stopping it
    assert isinstance(failed.exception(), ValueError)


async def test_a_cancel_of_the_caller_while_it_waits_propagates() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # takes its time to stop

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert stopping.cancelled()
    release.set()
    await asyncio.wait({task})
