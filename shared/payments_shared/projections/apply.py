"""Turning a batch of events into list entries: each stream the batch touches is folded once, up to the last
of its events in the batch (so the entry reflects exactly the events up to the batch's checkpoint)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from payments_shared.eventstore.port import EventStore, RecordedEvent
from payments_shared.projections.model import Projection
from payments_shared.projections.readmodel import Versioned

logger = logging.getLogger(__name__)


async def entries_for(store: EventStore, projection: Projection, batch: Sequence[RecordedEvent]) -> list[Versioned]:
    last_version: dict[str, int] = {}
    for event in batch:
        if projection.follows(event.stream):
            last_version[event.stream] = max(event.version, last_version.get(event.stream, -1))
    entries: list[Versioned] = []
    for stream, version in last_version.items():
        events = [event for event in await store.read(stream) if event.version <= version]
        try:
            entry = projection.entry_of(events)
        except Exception:  # one unreadable stream must not stop every list: `payments-ops verify` reports it
            logger.exception("projection %s cannot fold %s; skipped", projection.name, stream)
            continue
        if entry is not None:
            entries.append(Versioned(entry, version))
    return entries
