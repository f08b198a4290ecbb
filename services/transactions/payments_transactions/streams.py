"""Reading and appending `transaction-{id}` streams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from payments_shared.eventstore.port import NO_STREAM, EventStore, NewEvent, RecordedEvent

from payments_transactions.domain.events import DomainEvent, stream_name
from payments_transactions.domain.state import Transaction


class TransactionStreams:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def load(self, transaction_id: str) -> tuple[list[RecordedEvent], Transaction | None]:
        recorded = await self.store.read(stream_name(transaction_id))
        return recorded, Transaction.from_events(recorded)

    async def append(
        self, transaction_id: str, events: Sequence[DomainEvent], expected_version: int, metadata: Mapping[str, Any]
    ) -> int:
        """Raises WrongExpectedVersion when the stream moved since `expected_version` was read."""
        new = [NewEvent(event.type, event.data, metadata) for event in events]
        return await self.store.append(stream_name(transaction_id), new, expected_version)

    async def append_one(
        self, transaction_id: str, event: DomainEvent, expected_version: int, metadata: Mapping[str, Any]
    ) -> RecordedEvent:
        """Append one event; return it as recorded, without reading it back: its version follows the expected
        one and the store returns its position. `recorded_at` is this process's clock (the store's own may differ
        by the append's duration) and `metadata` is what was passed (an instrumented store may add a
        `traceparent`): what the domain and the replies read of an appended event is exact."""
        if expected_version < NO_STREAM:
            raise ValueError("append_one needs an exact expected version (or NO_STREAM)")
        new = NewEvent(event.type, event.data, metadata)
        stream = stream_name(transaction_id)
        position = await self.store.append(stream, [new], expected_version)
        version = expected_version + 1  # NO_STREAM (-1) → 0
        return RecordedEvent(new.id, stream, new.type, new.data, new.metadata, version, position, datetime.now(UTC))

    async def append_all(
        self, transaction_id: str, events: Sequence[DomainEvent], expected_version: int, metadata: Mapping[str, Any]
    ) -> list[RecordedEvent]:
        """Append `events` atomically; return them as recorded. One is not read back (`append_one`); several (a
        refund's outcome with the provider reports it settles, which is rare) are, for their exact positions."""
        if len(events) == 1:
            return [await self.append_one(transaction_id, events[0], expected_version, metadata)]
        await self.append(transaction_id, events, expected_version, metadata)
        recorded = await self.store.read(stream_name(transaction_id), expected_version + 1)
        return recorded[: len(events)]
