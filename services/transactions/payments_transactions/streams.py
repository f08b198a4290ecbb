"""Reading and appending `transaction-{id}` streams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from payments_shared.eventstore.port import EventStore, NewEvent, RecordedEvent

from payments_transactions.domain.events import DomainEvent, stream_name
from payments_transactions.domain.state import Transaction


class TransactionStreams:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def load(self, transaction_id: str) -> tuple[list[RecordedEvent], Transaction | None]:
        recorded = await self.store.read(stream_name(transaction_id))
        return recorded, Transaction.from_events(recorded)

    async def exists(self, transaction_id: str) -> bool:
        return bool(await self.store.read(stream_name(transaction_id)))

    async def append(
        self, transaction_id: str, events: Sequence[DomainEvent], expected_version: int, metadata: Mapping[str, Any]
    ) -> int:
        """Raises WrongExpectedVersion when the stream moved since `expected_version` was read."""
        new = [NewEvent(event.type, event.data, metadata) for event in events]
        return await self.store.append(stream_name(transaction_id), new, expected_version)
