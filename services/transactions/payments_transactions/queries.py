"""get_transaction and get_transaction_events: a fold (or the raw stream) of one transaction."""

from __future__ import annotations

from typing import Any

from payments_shared.errors import not_found
from payments_shared.eventstore.port import RecordedEvent
from payments_shared.messages import Reply

from payments_transactions.context import Delivery
from payments_transactions.domain.state import Transaction
from payments_transactions.streams import TransactionStreams
from payments_transactions.views import events_json, transaction_json


class QueryHandler:
    def __init__(self, streams: TransactionStreams) -> None:
        self._streams = streams

    async def _visible(self, delivery: Delivery) -> tuple[list[RecordedEvent], Transaction]:
        """The transaction if it exists in the caller's workspace; another workspace's is 404 like a missing one."""
        recorded, transaction = await self._streams.load(str(delivery.payload["transaction_id"]))
        if transaction is None or transaction.workspace != delivery.command.workspace:
            raise not_found("transaction", param="transaction_id")
        return recorded, transaction

    async def get_transaction(self, delivery: Delivery) -> dict[str, Any]:
        _, transaction = await self._visible(delivery)
        return Reply(status=200, body=transaction_json(transaction)).to_body()

    async def get_transaction_events(self, delivery: Delivery) -> dict[str, Any]:
        recorded, _ = await self._visible(delivery)
        return Reply(status=200, body=events_json(recorded)).to_body()
