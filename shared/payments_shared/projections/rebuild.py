"""Rebuilding a projection from the store (what `payments-ops replay` runs), safe while a runner is live.

From position 0 the model is built aside (under `<name>~rebuild`) and swapped in by one transaction once it is
at least as far as the live one (so a model never goes back); a live runner then continues from the swapped-in
checkpoint. From a later position the events are re-applied onto the live model (from its checkpoint instead,
when that is earlier): entries only move forward (stream versions), so this is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from payments_shared.eventstore.port import EventStore, RecordedEvent
from payments_shared.projections.apply import entries_for
from payments_shared.projections.model import Projection
from payments_shared.projections.readmodel import ReadModel

BATCH_SIZE: Final = 500
REBUILD_SUFFIX: Final = "~rebuild"

# Called after each batch with (events read so far, position reached).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RebuildResult:
    events: int  # events read from the store
    entries: int  # entries written (one per object whose stream had events in range)
    position: int  # the model's checkpoint afterwards


async def rebuild(
    store: EventStore,
    read_model: ReadModel,
    projection: Projection,
    from_position: int = 0,
    progress: Progress | None = None,
) -> RebuildResult:
    counts = _Counts(progress)
    if from_position > 0:
        # Never past the checkpoint: the model would be marked as reflecting events it never applied.
        start = min(from_position, await read_model.checkpoint(projection.name) + 1)
        await _catch_up(store, read_model, projection, projection.name, start, counts)
        return counts.result(await read_model.checkpoint(projection.name))
    aside = projection.name + REBUILD_SUFFIX
    await read_model.discard(aside)
    position = 0
    while True:  # until the rebuilt model is at least as far as the live one, then swap it in
        read_before = counts.events
        await _catch_up(store, read_model, projection, aside, position + 1, counts)
        # Nothing more to read and the live model still further on: it is ahead of the store itself (the store
        # restored from an older backup). The store is the truth: swapped in anyway (a live runner resumes from
        # the rebuilt checkpoint, and re-applies whatever is appended meanwhile).
        ahead_of_the_store = counts.events == read_before
        swapped = await read_model.swap(aside, projection.name, force=ahead_of_the_store)
        if swapped is not None:
            return counts.result(swapped)
        position = await read_model.checkpoint(aside)


class _Counts:
    def __init__(self, progress: Progress | None) -> None:
        self.events = 0
        self.entries = 0
        self._progress = progress

    def add(self, events: int, entries: int, position: int) -> None:
        self.events += events
        self.entries += entries
        if self._progress is not None:
            self._progress(self.events, position)

    def result(self, position: int) -> RebuildResult:
        return RebuildResult(events=self.events, entries=self.entries, position=position)


async def _catch_up(
    store: EventStore, read_model: ReadModel, projection: Projection, target: str, start: int, counts: _Counts
) -> None:
    """Apply every event from `start` to the end of the store onto `target`, batch by batch."""
    batch: list[RecordedEvent] = []
    async for event in store.read_all(start):
        batch.append(event)
        if len(batch) >= BATCH_SIZE:
            counts.add(len(batch), await _apply(store, read_model, projection, target, batch), batch[-1].position)
            batch = []
    if batch:
        counts.add(len(batch), await _apply(store, read_model, projection, target, batch), batch[-1].position)


async def _apply(
    store: EventStore, read_model: ReadModel, projection: Projection, target: str, batch: list[RecordedEvent]
) -> int:
    written = await entries_for(store, projection, batch)
    while True:  # a live runner may move the same checkpoint meanwhile: compare-and-set until ours lands
        current = await read_model.checkpoint(target)
        if await read_model.commit(target, written, current, max(current, batch[-1].position)):
            return len(written)
