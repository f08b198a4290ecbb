"""In-memory event store: the port's semantics without persistence, for unit tests and `memory://`.

Also home of `resolve_append`, the pure expected-version rule every adapter that checks versions itself shares.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from payments_shared import jsoncodec
from payments_shared.eventstore.port import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    EventStoreError,
    EventStoreUnavailable,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)


@dataclass(frozen=True)
class AlreadyAppended:
    """The events are already the stream's events: the append is a no-op returning this position."""

    position: int


@dataclass(frozen=True)
class AppendAt:
    """Append the events from this stream version on."""

    first_version: int


def idempotency_start(expected_version: int, new_ids: Sequence[uuid.UUID], index_of: Mapping[uuid.UUID, int]) -> int:
    """The stream version at which the new events would already sit if this append was done before (-1: none)."""
    if expected_version >= 0 or expected_version == NO_STREAM:
        return expected_version + 1
    return index_of.get(new_ids[0], -1) if new_ids else -1


def matching_position(new_ids: Sequence[uuid.UUID], window: Sequence[tuple[uuid.UUID, int]]) -> int | None:
    """The position of the last of `window`'s (id, position) pairs when their ids are exactly `new_ids`."""
    if new_ids and [event_id for event_id, _ in window] == list(new_ids):
        return window[-1][1]
    return None


def resolve_append(
    stream: str, expected_version: int, current_version: int | None, already_at: int | None
) -> AlreadyAppended | AppendAt:
    """Decide an append (pure). `already_at`: position of the same events found at the idempotency start."""
    if already_at is not None:
        return AlreadyAppended(already_at)
    if expected_version == ANY:
        pass
    elif expected_version == STREAM_EXISTS:
        if current_version is None:
            raise WrongExpectedVersion(stream, expected_version, None)
    elif expected_version == NO_STREAM:
        if current_version is not None:
            raise WrongExpectedVersion(stream, expected_version, current_version)
    elif expected_version < 0:
        raise EventStoreError(f"invalid expected version {expected_version}")
    elif current_version != expected_version:
        raise WrongExpectedVersion(stream, expected_version, current_version)
    return AppendAt(0 if current_version is None else current_version + 1)


class InMemoryEventStore:
    """Positions start at 1 and are contiguous; everything lives on one event loop."""

    def __init__(self) -> None:
        self._all: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._ids: set[uuid.UUID] = set()
        self._appended = asyncio.Event()
        self._closed = False

    async def append(self, stream: str, events: Sequence[NewEvent], expected_version: int) -> int:
        self._check_open()
        recorded = self._streams.get(stream, [])
        new_ids = [event.id for event in events]
        start = idempotency_start(expected_version, new_ids, {event.id: event.version for event in recorded})
        window = [(event.id, event.position) for event in recorded[start : start + len(new_ids)]] if start >= 0 else []
        current_version = len(recorded) - 1 if recorded else None
        decision = resolve_append(stream, expected_version, current_version, matching_position(new_ids, window))
        if isinstance(decision, AlreadyAppended):
            return decision.position
        if not events:
            return recorded[-1].position if recorded else 0
        if self._ids.intersection(new_ids) or len(set(new_ids)) != len(new_ids):
            raise EventStoreError(f"stream {stream!r}: an event id is already recorded")
        now = datetime.now(UTC)
        for offset, event in enumerate(events):
            record = RecordedEvent(
                id=event.id,
                stream=stream,
                type=event.type,
                data=jsoncodec.detached_copy(event.data),
                metadata=jsoncodec.detached_copy(event.metadata),
                version=decision.first_version + offset,
                position=len(self._all) + 1,
                recorded_at=now,
            )
            self._all.append(record)
            self._streams.setdefault(stream, []).append(record)
            self._ids.add(event.id)
        self._wake_subscribers()
        return self._all[-1].position

    async def read(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        self._check_open()
        return list(self._streams.get(stream, [])[max(from_version, 0) :])

    async def read_all(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        self._check_open()
        index = max(from_position - 1, 0)
        while index < len(self._all):
            yield self._all[index]
            index += 1

    async def subscribe(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        self._check_open()
        index = max(from_position - 1, 0)
        while not self._closed:
            while index < len(self._all):
                yield self._all[index]
                index += 1
            await self._appended.wait()

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
        self._wake_subscribers()

    def _wake_subscribers(self) -> None:
        woken, self._appended = self._appended, asyncio.Event()
        woken.set()

    def _check_open(self) -> None:
        if self._closed:
            raise EventStoreUnavailable("event store is closed")
