"""Turning a batch of events into list entries: each stream the batch touches is folded once, up to the last
of its events in the batch (so the entry reflects exactly the events up to the batch's checkpoint).

A stream's events come from the batch itself when the batch (with what `StreamEvents` kept of earlier batches)
holds all of them from version 0, as it does for a stream the subscription saw begin; the store is read only
for the part it lacks (a stream begun before the checkpoint, or fallen out of the bounded memory)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from payments_shared.eventstore.port import EventStore, RecordedEvent
from payments_shared.projections.model import Projection
from payments_shared.projections.readmodel import Versioned

logger = logging.getLogger(__name__)

KEPT_STREAMS: Final = 2048  # streams whose events stay in memory between batches (a few KB each)


class StreamEvents:
    """The events of the streams a projection saw recently, each a gap-free prefix from version 0 (events are
    immutable, so what is kept never goes stale). Least recently used streams are dropped past `capacity`."""

    def __init__(self, store: EventStore, capacity: int = KEPT_STREAMS) -> None:
        self._store = store
        self._capacity = capacity
        self._kept: OrderedDict[str, list[RecordedEvent]] = OrderedDict()

    async def up_to(self, stream: str, version: int, delivered: Sequence[RecordedEvent]) -> list[RecordedEvent]:
        """The stream's events with version <= `version`; `delivered`: this batch's events of the stream."""
        events = self._kept.pop(stream, [])
        for event in delivered:
            if event.version == len(events):  # the next one (a redelivered older one is already there)
                events.append(event)
            elif event.version > len(events):  # a gap: read what is missing, and the rest, from the store
                events.extend(await self._store.read(stream, len(events)))
                break
        if len(events) <= version:  # the batch ended before `version`: cannot happen, but never fold short
            events.extend(await self._store.read(stream, len(events)))
        self._kept[stream] = events
        while len(self._kept) > self._capacity:
            self._kept.popitem(last=False)
        return events[: version + 1]


async def entries_for(
    store: EventStore, projection: Projection, batch: Sequence[RecordedEvent], kept: StreamEvents | None = None
) -> list[Versioned]:
    delivered: dict[str, list[RecordedEvent]] = {}
    for event in batch:
        if projection.follows(event.stream):
            delivered.setdefault(event.stream, []).append(event)
    streams = kept if kept is not None else StreamEvents(store)
    entries: list[Versioned] = []
    for stream, events_in_batch in delivered.items():
        version = max(event.version for event in events_in_batch)
        events = await streams.up_to(stream, version, sorted(events_in_batch, key=lambda event: event.version))
        try:
            entry = projection.entry_of(events)
        except Exception:  # one unreadable stream must not stop every list: `payments-ops verify` reports it
            logger.exception("projection %s cannot fold %s; skipped", projection.name, stream)
            continue
        if entry is not None:
            entries.append(Versioned(entry, version))
    return entries
