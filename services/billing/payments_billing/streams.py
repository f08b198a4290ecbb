"""Reading a customer or subscription stream into its fold, and appending what a command decided.

Event ids are derived from the command id, and a stream remembers which commands it holds, so a command
redelivered after its append (a crash before the reply) sees it already applied instead of applying it twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from payments_shared.eventstore.port import NO_STREAM, EventStore, NewEvent, RecordedEvent
from payments_shared.messages import Command, event_metadata

from payments_billing.events import DomainEvent

T = TypeVar("T")

_EVENT_ID_NAMESPACE = uuid.UUID("0b7e3c1e-52b4-4c53-9d0e-6a1f2f6d3b8a")


def event_id(command_id: str, stream: str, step: str = "") -> uuid.UUID:
    """One event per command and stream; `step` names a second one (a creation undone on the same stream)."""
    return uuid.uuid5(_EVENT_ID_NAMESPACE, f"{command_id}\x00{stream}" + (f"\x00{step}" if step else ""))


@dataclass(frozen=True)
class Loaded(Generic[T]):
    state: T | None
    version: int  # the last event's version; NO_STREAM (-1) when the stream does not exist
    command_ids: frozenset[str]

    def applied(self, command_id: str) -> bool:
        return command_id in self.command_ids


@dataclass(frozen=True)
class Origin:
    """Where a command came from, for the metadata of the events it appends."""

    command: Command
    correlation_id: str
    causation_id: str
    traceparent: str | None = None


class Streams:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def read(self, stream: str) -> list[RecordedEvent]:
        return await self.store.read(stream)

    async def load(self, stream: str, fold: Callable[[Sequence[RecordedEvent]], T | None]) -> Loaded[T]:
        events = await self.store.read(stream)
        command_ids = frozenset(str(event.metadata.get("command_id", "")) for event in events)
        version = events[-1].version if events else NO_STREAM
        return Loaded(fold(events), version, command_ids)

    async def append(
        self,
        stream: str,
        event: DomainEvent,
        expected_version: int,
        origin: Origin,
        step: str = "",
        on_behalf_of: str | None = None,
    ) -> None:
        """`on_behalf_of`: the command the event belongs to when another one records it (finishing a change a
        crashed delivery left open): its id and `command_id` are that command's, so both record the same event."""
        await self.append_all(stream, [(event, step)], expected_version, origin, on_behalf_of)

    async def append_all(
        self,
        stream: str,
        steps: Sequence[tuple[DomainEvent, str]],
        expected_version: int,
        origin: Origin,
        on_behalf_of: str | None = None,
    ) -> None:
        """Several events of one command at once (each with its `step`, as in `append`): all recorded or none."""
        metadata = event_metadata(origin.command, origin.correlation_id, origin.causation_id, origin.traceparent)
        command_id = on_behalf_of or origin.command.command_id
        metadata["command_id"] = command_id
        new_events = [
            NewEvent(event.type, dict(event.data), dict(metadata), event_id(command_id, stream, step))
            for event, step in steps
        ]
        await self.store.append(stream, new_events, expected_version)
