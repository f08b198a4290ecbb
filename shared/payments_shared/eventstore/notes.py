"""`EventNotes`: what a periodic sweep needs to know of the events appended since its last round.

`take()` returns a note for each event appended since the previous `take()` (the first time: the whole store),
in the store's order. Until `start()` it reads them back from the store; from `start()` until `stop()` a store
subscription notes them as they are appended, reading them while they are fresh (together with the list
projections, which read the same events at the same moments). Reading a round's events back at once cost a busy
embedded system ~4 % of its CPU and stalled the requests served meanwhile every few seconds: under load a 5 s
round is ~17,000 events, mostly decoded again because they had left the decoded-event cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Final, Generic, TypeVar

from payments_shared.eventstore.port import EventStore, RecordedEvent
from payments_shared.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

N = TypeVar("N")

RESUBSCRIBE_AFTER_S: Final = 1.0


class EventNotes(Generic[N]):
    def __init__(self, store: EventStore, note: Callable[[RecordedEvent], N | None], name: str) -> None:
        self._store = store
        self._note = note  # an event's note, or None for an event the sweep has no use for
        self._name = name
        self._next_position = 0  # events before it have been noted
        self._notes: list[N] = []
        self._follower: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Note new events as they are appended, until `stop()`."""
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow(), name=self._name)

    async def stop(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            await cancel_and_wait(follower)

    async def take(self) -> list[N]:
        """The notes of the events appended since the last call."""
        if self._follower is None:
            await self._note_all(self._store.read_all(self._next_position))
        notes, self._notes = self._notes, []
        return notes

    async def _follow(self) -> None:
        while True:
            try:
                await self._note_all(self._store.subscribe(self._next_position))
                return  # the store is closed
            except Exception as error:  # the store may be down for a while: resume after the last event noted
                log = {"follower": self._name, "reason": repr(error)}
                logger.warning("event subscription failed, resubscribing", extra=log)
                await asyncio.sleep(RESUBSCRIBE_AFTER_S)

    async def _note_all(self, events: AsyncIterator[RecordedEvent]) -> None:
        async for event in events:
            self._next_position = event.position + 1
            note = self._note(event)
            if note is not None:
                self._notes.append(note)
