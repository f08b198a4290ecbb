"""The transactions list read model: each `transaction-{id}` stream as the list shows it (the same JSON as
`GET …/transactions/{id}`, from the same fold). Hosted by this worker; rebuilt by `payments-ops replay`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from payments_shared.eventstore.port import RecordedEvent
from payments_shared.projections.listing import ListSpec
from payments_shared.projections.model import ListEntry, Projection

from payments_transactions.domain.state import Status, Transaction
from payments_transactions.views import transaction_json


def transaction_entry(events: Sequence[RecordedEvent]) -> ListEntry | None:
    transaction = Transaction.from_events(events)
    if transaction is None:
        return None
    return ListEntry(
        id=transaction.id,
        workspace=transaction.workspace,
        created_at=transaction.created_at,
        body=transaction_json(transaction),
        status=transaction.status.value,
        customer_id=transaction.customer_id,
    )


TRANSACTIONS: Final = Projection("transactions", "transaction-txn_", transaction_entry)
LISTS: Final = {
    "list_transactions": ListSpec(
        projection="transactions",
        url="/api/v1/payments/transactions",
        filters=("customer_id", "status", "created"),
        statuses=tuple(status.value for status in Status),
    )
}
