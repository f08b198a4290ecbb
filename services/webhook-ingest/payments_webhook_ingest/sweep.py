"""Re-send recorded webhook events that were never forwarded (the broker was down, the process died between
the append and the send).

The sweep follows the store's global order (`EventNotes`: the first round reads the store, later ones take what a
subscription noted meanwhile): a `WebhookReceived` becomes pending, a `WebhookForwarded` of the same stream clears
it. Pending events older than the grace period (the request that recorded an event normally forwards it itself
within it) are forwarded. The position lives in memory: a new process starts at position 0, i.e. every start-up
scans the store once for anything left unforwarded.

Where a forwarded command does not outlive the process (`forwarded_lasts` False: embedded mode's in-memory
broker), a `WebhookForwarded` recorded before this process started proves nothing: the command may have died with
the process that sent it. There only the worker's `WebhookApplied` clears an event found by the first round's read
of the store; the `WebhookForwarded` noted after it were sent into this process's own queues.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from payments_shared.eventstore.notes import EventNotes
from payments_shared.eventstore.port import EventStore, RecordedEvent
from payments_shared.tasks import cancel_and_wait
from payments_shared.webhook_applied import WEBHOOK_APPLIED

from payments_webhook_ingest.forwarding import WebhookForwarder
from payments_webhook_ingest.recording import WEBHOOK_FORWARDED, WEBHOOK_RECEIVED

logger = logging.getLogger(__name__)


class ForwardingSweep:
    def __init__(
        self,
        store: EventStore,
        forwarder: WebhookForwarder,
        grace_s: float,
        interval_s: float,
        forwarded_lasts: bool = True,
    ) -> None:
        self.store = store
        self.forwarder = forwarder
        self.grace = timedelta(seconds=grace_s)
        self.interval_s = interval_s
        self.pending: dict[str, RecordedEvent] = {}
        self._forwarded_clears = forwarded_lasts  # False until the first round has read the store
        self._notes = EventNotes(store, _forwarding_note, "webhook-forwarding-follower")
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> int:
        """Catch up with the store, then forward what is overdue; the number of events forwarded."""
        for event in await self._notes.take():
            if event.type == WEBHOOK_RECEIVED:
                self.pending[event.stream] = event
            elif event.type == WEBHOOK_APPLIED or self._forwarded_clears:
                self.pending.pop(event.stream, None)
        self._forwarded_clears = True
        overdue_before = datetime.now(UTC) - self.grace
        forwarded = 0
        for stream, event in list(self.pending.items()):
            if event.recorded_at > overdue_before:
                continue
            if await self.forwarder.forward(event.data):
                self.pending.pop(stream, None)
                forwarded += 1
        if forwarded:
            logger.info("unforwarded webhooks sent again", extra={"count": forwarded})
        return forwarded

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception as error:  # the store may be down for a while: try again next round
                logger.warning("webhook sweep failed", extra={"error": type(error).__name__})
            self._notes.start()  # after the first round's read of the store
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhook-forwarding-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self._notes.stop()


def _forwarding_note(event: RecordedEvent) -> RecordedEvent | None:
    received = event.type == WEBHOOK_RECEIVED and event.stream.startswith("webhook-")
    return event if received or event.type in (WEBHOOK_FORWARDED, WEBHOOK_APPLIED) else None
