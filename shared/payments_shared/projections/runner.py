"""The catch-up subscription that keeps one projection's read model current.

From the stored checkpoint it follows the store (catch-up, then live), applies events in batches and moves the
checkpoint in the same transaction as the entries. If the checkpoint moved under it (a rebuild was swapped in),
it starts again from the stored one. Events are applied at least once; applying one again changes nothing.
Under load, batches are gathered for COMMIT_INTERVAL_S; streams are folded from the subscription's own events
(apply.StreamEvents) rather than read again. Of the processes sharing a read model's file, one projects at a time
(projector_lock); a runner of another waits to take over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from payments_shared.eventstore.port import EventStore, EventStoreError, RecordedEvent
from payments_shared.projections.apply import StreamEvents, entries_for
from payments_shared.projections.model import Projection
from payments_shared.projections.projector_lock import ProjectorLock, lock_path
from payments_shared.projections.readmodel import ReadModel
from payments_shared.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

BATCH_SIZE: Final = 500
RETRY_AFTER_S: Final = 1.0
# After a batch that was not full, let events gather this long before the next: one commit (and one thread hop)
# per interval instead of one per event under load; a list lags its writes by at most about this much more.
COMMIT_INTERVAL_S: Final = 0.05


class ProjectionRunner:
    def __init__(self, store: EventStore, read_model: ReadModel, projection: Projection) -> None:
        self.store = store
        self.read_model = read_model
        self.projection = projection
        self._task: asyncio.Task[None] | None = None
        self._kept = StreamEvents(store)
        self._lock = ProjectorLock(lock_path(read_model.path, projection.name))

    @property
    def projecting(self) -> bool:
        """Whether this process is the one projecting (another sharing the read model's file may be)."""
        return self._lock.held

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"projection:{self.projection.name}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._lock.release()

    async def _run(self) -> None:
        await self._lock.acquire()
        while True:
            try:
                position = await self.read_model.checkpoint(self.projection.name)
                if await self._follow(position):
                    logger.info("projection %s stopped: the event store closed", self.projection.name)
                    return
            except (EventStoreError, OSError) as error:
                logger.warning("projection %s interrupted, resuming: %s", self.projection.name, error)
                await asyncio.sleep(RETRY_AFTER_S)
            except Exception:
                logger.exception("projection %s failed, resuming", self.projection.name)
                await asyncio.sleep(RETRY_AFTER_S)

    async def _follow(self, position: int) -> bool:
        """Apply batches from `position`. Returns False when the stored checkpoint is no longer ours (to start
        again from it), True when the subscription ended (the store was closed)."""
        events: asyncio.Queue[RecordedEvent] = asyncio.Queue(maxsize=4 * BATCH_SIZE)
        feeder = asyncio.create_task(self._feed(position, events))
        try:
            while True:
                batch = await _next_batch(events, feeder)
                if batch is None:
                    feeder.result()  # the subscription ended: raise its error, if any
                    return True
                entries = await entries_for(self.store, self.projection, batch, self._kept)
                last = batch[-1].position
                if not await self.read_model.commit(self.projection.name, entries, position, last):
                    logger.info("projection %s checkpoint moved (rebuilt): resuming from it", self.projection.name)
                    return False
                position = last
                if len(batch) < BATCH_SIZE:
                    await asyncio.sleep(COMMIT_INTERVAL_S)
        finally:
            # A stop() arriving meanwhile cancels the feeder instead of us: cancel_and_wait does not take the
            # CancelledError it ends with for our own (this runner would go on).
            await cancel_and_wait(feeder)

    async def _feed(self, position: int, events: asyncio.Queue[RecordedEvent]) -> None:
        async for event in self.store.subscribe(position + 1):
            await events.put(event)


async def _next_batch(events: asyncio.Queue[RecordedEvent], feeder: asyncio.Task[None]) -> list[RecordedEvent] | None:
    """What is queued now (at least one event, at most a batch); None once the subscription ended and every
    event it delivered was taken."""
    if events.empty():
        getting = asyncio.ensure_future(events.get())
        await asyncio.wait({getting, feeder}, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            await cancel_and_wait(getting)
            return None
        batch = [getting.result()]
    else:
        batch = [events.get_nowait()]
    while len(batch) < BATCH_SIZE and not events.empty():
        batch.append(events.get_nowait())
    return batch
