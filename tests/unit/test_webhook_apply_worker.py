"""The transactions worker's `apply_provider_event` over an in-memory store: the payment found through the
provider ids its events record (also ids recorded after the index was first read), applied once however often
the command comes, unknown objects acknowledged."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from payments_shared.broker.port import Message
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.messages import Command
from payments_shared.providers.port import Outcome, ProviderResult
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker

from tests.support.transactions import paid_transaction


@pytest.fixture
async def store() -> AsyncIterator[InMemoryEventStore]:
    events = InMemoryEventStore()
    yield events
    await events.close()


async def requires_action_payment(store: InMemoryEventStore, transaction_id: str, intent_id: str) -> None:
    result = ProviderResult(Outcome.REQUIRES_ACTION, reference=intent_id)
    await paid_transaction(store, transaction_id, "stripe", "pm_card_visa", result)


def apply_message(event_id: str, intent_id: str, event_type: str = "payment_intent.succeeded") -> Message:
    payload: dict[str, Any] = {
        "provider": "stripe",
        "event_id": event_id,
        "event_type": event_type,
        "object_id": intent_id,
        "object_type": "payment_intent",
        "provider_created": "2026-01-01T00:05:00.000000Z",
        "webhook_stream": f"webhook-stripe-{event_id}",
        "object": {"id": intent_id, "object": "payment_intent", "amount_received": 1500, "status": "succeeded"},
    }
    command = Command(
        type="apply_provider_event", workspace="", actor="webhook:stripe", command_id=str(uuid.uuid4()), payload=payload
    )
    return Message(body=command.model_dump())


async def test_a_payment_is_found_and_moved_once(store: InMemoryEventStore) -> None:
    worker = TransactionsWorker(store, {}, TransactionsSettings())
    await requires_action_payment(store, "txn_a", "pi_a")
    # The index is read once here, before the second payment exists.
    assert (await worker.handle(apply_message("evt_unknown", "pi_nobody")))["body"]["outcome"] == "unknown_object"
    await requires_action_payment(store, "txn_b", "pi_b")

    message = apply_message("evt_1", "pi_b")
    first = await worker.handle(message)
    again = await worker.handle(message)
    assert first["body"] == {"outcome": "PaymentCaptured", "transaction_id": "txn_b"}
    assert again["body"]["outcome"] == "nothing_to_apply"
    recorded = await store.read("transaction-txn_b")
    assert [e.type for e in recorded] == ["TransactionRequested", "PaymentRequiresAction", "PaymentCaptured"]
    assert recorded[-1].metadata["workspace"] == "ws_1"
    assert recorded[-1].data["webhook_event_id"] == "evt_1"
    assert [e.type for e in await store.read("transaction-txn_a")][-1] == "PaymentRequiresAction"


async def test_a_malformed_apply_command_is_refused(store: InMemoryEventStore) -> None:
    worker = TransactionsWorker(store, {}, TransactionsSettings())
    command = Command(type="apply_provider_event", workspace="", actor="webhook:stripe", command_id="c", payload={})
    reply = await worker.handle(Message(body=command.model_dump()))
    assert reply["status"] == 400


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payment_intent", {"id": "pi_c", "object": "payment_intent"}),  # expanded, as Stripe's expandable fields
        ("payment_intent", ["pi_c"]),
        ("charge", {"id": "ch_other"}),
        ("charge", {"nested": {"x": 1}}),
    ],
)
async def test_a_dispute_naming_its_payment_by_an_object_is_applied_not_crashed(
    store: InMemoryEventStore, field: str, value: Any
) -> None:
    # `dict.fromkeys` over the ids raised TypeError (unhashable dict) on every delivery: a signed webhook answered
    # 200 was dead-lettered, never applied (probe).
    worker = TransactionsWorker(store, {}, TransactionsSettings())
    await paid_transaction(
        store, "txn_c", "stripe", "pm_card_visa", ProviderResult(Outcome.APPROVED, "pi_c", amount=1500)
    )
    message = apply_message("evt_dispute", "dp_1", "charge.dispute.created")
    payload = message.body["payload"]
    payload["object_type"] = "dispute"
    payload["object"] = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 1500,
        "status": "needs_response",
        "reason": "fraudulent",
        "payment_intent": "pi_c",
        field: value,
    }

    reply = await worker.handle(message)

    expected = "PaymentDisputed" if field == "charge" or isinstance(value, dict) else "unknown_object"
    assert reply["body"].get("outcome") == expected, reply
