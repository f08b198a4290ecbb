"""The event-store port: append-only streams with optimistic concurrency and a global order.

Every adapter (SQLite, KurrentDB, in-memory) implements `EventStore` and passes tests/contract/test_eventstore.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from payments_shared.ids import time_ordered_uuid

# Expected-version sentinels (non-negative ints mean "the stream's last event has exactly this version").
NO_STREAM: Final = -1
ANY: Final = -2
STREAM_EXISTS: Final = -4


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=time_ordered_uuid)  # time-ordered: see ids.time_ordered_uuid


@dataclass(frozen=True)
class RecordedEvent:
    id: uuid.UUID
    stream: str
    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    version: int  # 0-based position within its stream
    position: int  # global, strictly increasing in commit order (not necessarily contiguous)
    recorded_at: datetime


class EventStoreError(Exception):
    """Base class of every error an adapter raises."""


class WrongExpectedVersion(EventStoreError):
    def __init__(self, stream: str, expected: int, actual: int | None) -> None:
        super().__init__(f"stream {stream!r}: expected version {expected}, actual {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual  # None when the stream does not exist


class EventStoreUnavailable(EventStoreError):
    """The store cannot be reached or written (locked, read-only, connection lost)."""


class UnreadableEvent(EventStoreError):
    """A stored event that cannot be decoded: its file was changed by something other than the store."""


class EventStore(Protocol):
    async def append(self, stream: str, events: Sequence[NewEvent], expected_version: int) -> int:
        """Append atomically; return the global position of the last event appended.

        Re-appending events whose ids are already the stream's events at that expected version is a no-op
        that returns their position (idempotent append, as in EventStoreDB).
        """
        ...

    async def read(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        """The stream's events in order; [] when the stream does not exist."""
        ...

    def read_all(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        """Every event with position >= from_position, in global order, then stop."""
        ...

    def subscribe(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        """Catch-up subscription: every event with position >= from_position, then live events, forever."""
        ...

    async def ping(self) -> None:
        """Raise EventStoreUnavailable if the store cannot serve requests (used by /readyz)."""
        ...

    async def close(self) -> None: ...
