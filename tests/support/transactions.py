"""A transaction stream as the transactions worker writes it (request, then the provider's outcome), for tests that
start from a payment already made."""

from __future__ import annotations

import uuid

from payments_shared.eventstore.port import NO_STREAM, EventStore, NewEvent
from payments_shared.providers.port import ProviderResult
from payments_transactions.domain import decisions
from payments_transactions.domain.state import Transaction

METADATA = {"workspace": "ws_1", "occurred_at": "2026-01-01T00:00:00.000000Z"}


async def paid_transaction(
    store: EventStore, transaction_id: str, provider: str, token: str, result: ProviderResult, currency: str = "usd"
) -> None:
    """`transaction-{transaction_id}`: a charge of 1,500 (usd unless given) in workspace ws_1, answered with
    `result`."""
    stream = f"transaction-{transaction_id}"
    requested = decisions.request_payment(
        transaction_id=transaction_id,
        kind="charge",
        amount=1500,
        currency=currency,
        provider=provider,
        payment_method={"type": "token", "token": token},
        customer_id=None,
        description=None,
        metadata={},
        command_id=str(uuid.uuid4()),
        message_id="m1",
        fingerprint=None,
    )
    await store.append(stream, [NewEvent(requested.type, requested.data, METADATA)], NO_STREAM)
    transaction = Transaction.from_events(await store.read(stream))
    assert transaction is not None
    outcome = decisions.payment_outcome(transaction, result)
    await store.append(stream, [NewEvent(outcome.type, outcome.data, METADATA)], 0)
