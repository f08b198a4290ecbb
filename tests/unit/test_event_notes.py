"""EventNotes against real event-store adapters (in memory and SQLite files): every event appended is noted once,
in order, whether read back by `take()` or followed by a subscription; following reads nothing back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.notes import EventNotes
from payments_shared.eventstore.port import NO_STREAM, EventStore, EventStoreUnavailable, NewEvent, RecordedEvent

WAIT_S = 5.0  # a guard against hanging, not a timing assertion


@pytest.fixture
def store(each_embedded_store: EventStore) -> EventStore:
    return each_embedded_store


def odd_only(event: RecordedEvent) -> str | None:
    return event.stream if event.data["n"] % 2 else None


async def append(store: EventStore, *numbers: int) -> None:
    for n in numbers:
        await store.append(f"note-{n}", [NewEvent("Counted", {"n": n})], NO_STREAM)


class ReadsBack:
    """Counts `read_all` calls on a real store."""

    def __init__(self, store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        read_all = store.read_all

        def counted(from_position: int = 0) -> AsyncIterator[RecordedEvent]:
            self.calls += 1
            return read_all(from_position)

        monkeypatch.setattr(store, "read_all", counted)


async def notes_until(notes: EventNotes[str], count: int) -> list[str]:
    taken: list[str] = []
    async with asyncio.timeout(WAIT_S):
        while len(taken) < count:
            taken += await notes.take()
            await asyncio.sleep(0.01)
    return taken


async def test_take_reads_the_whole_store_first_then_only_what_is_new(store: EventStore) -> None:
    await append(store, 1, 2, 3)
    notes = EventNotes(store, odd_only, "test")
    assert await notes.take() == ["note-1", "note-3"]
    assert await notes.take() == []
    await append(store, 4, 5)
    assert await notes.take() == ["note-5"]


async def test_following_notes_what_is_appended_without_reading_it_back(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await append(store, 1)
    notes = EventNotes(store, odd_only, "test")
    assert await notes.take() == ["note-1"]
    reads = ReadsBack(store, monkeypatch)
    notes.start()
    try:
        await append(store, 2, 3, 5)
        assert await notes_until(notes, 2) == ["note-3", "note-5"]
    finally:
        await notes.stop()
    assert reads.calls == 0
    await append(store, 7)
    assert await notes.take() == ["note-7"]  # stopped: read back again, from where the notes ended


async def test_following_notes_what_another_process_appends(store: EventStore, tmp_path: Path) -> None:
    sqlite_file = tmp_path / "events.db"
    other = open_event_store(f"sqlite:///{sqlite_file}") if sqlite_file.exists() else store
    notes = EventNotes(store, odd_only, "test")
    notes.start()
    try:
        await append(other, 1, 3)
        assert await notes_until(notes, 2) == ["note-1", "note-3"]
    finally:
        await notes.stop()
        if other is not store:
            await other.close()


class FailsToSubscribeOnce:
    """A real store whose first subscription fails at once, as a store that is down for a moment."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.failed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def subscribe(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        if not self.failed:
            self.failed = True
            raise EventStoreUnavailable("down for a moment")
        async for event in self.store.subscribe(from_position):
            yield event


async def test_a_failed_subscription_resumes_after_the_last_event_noted(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("payments_shared.eventstore.notes.RESUBSCRIBE_AFTER_S", 0.01)
    flaky = FailsToSubscribeOnce(store)
    notes: EventNotes[str] = EventNotes(flaky, odd_only, "test")  # type: ignore[arg-type]
    await append(store, 1)
    assert await notes.take() == ["note-1"]
    notes.start()
    try:
        await append(store, 3)
        assert await notes_until(notes, 1) == ["note-3"]
    finally:
        await notes.stop()
    assert flaky.failed
