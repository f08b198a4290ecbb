"""A payment webhook applied as the provider's current state says, not as its (possibly stale) payload: the
pure part (what to read, what the answer means), Authorize.net refunds made outside this system resolved through
their original transaction, the dispute shown on the transaction JSON, and the transactions worker reading the
provider before applying (the provider is a stand-in that answers reads: the component under test is the
worker and its store)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from payments_shared.broker.port import Message
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.messages import Command
from payments_shared.money import to_minor_units
from payments_shared.providers.port import Outcome, ProviderResult
from payments_transactions.domain import decisions
from payments_transactions.domain import events as ev
from payments_transactions.domain.provider_events import ProviderEvent, refetch_reference, with_current_state
from payments_transactions.domain.state import Status, Transaction
from payments_transactions.settings import TransactionsSettings
from payments_transactions.views import transaction_json
from payments_transactions.worker import TransactionsWorker

from tests.support.transactions import paid_transaction
from tests.unit.test_webhook_apply_transactions import Stream, stripe


def authnet_refund(trans_id: str = "rf_9") -> ProviderEvent:
    return ProviderEvent(
        provider="authnet",
        event_id=str(uuid.uuid4()),
        type="net.authorize.payment.refund.created",
        object_id=trans_id,
        created="2026-01-01T00:02:00.000000Z",
        obj={"id": trans_id, "authAmount": 4.0, "entityName": "transaction"},
    )


def intent(status: str, **fields: Any) -> dict[str, Any]:
    return {"status": status, "object": {"id": "pi_1", "status": status, **fields}}


def test_what_is_read_before_applying() -> None:
    assert refetch_reference(stripe("payment_intent.succeeded")) == "pi_1"
    assert refetch_reference(stripe("charge.refunded", object_id="ch_1", payment_intent="pi_1")) == "pi_1"
    assert refetch_reference(stripe("charge.dispute.created", object_id="dp_1")) is None
    assert refetch_reference(authnet_refund()) == "rf_9"
    read = with_current_state(stripe("payment_intent.succeeded"), intent("succeeded", amount_received=1000))
    assert refetch_reference(read) is None  # read once


def test_a_stale_failure_is_superseded_by_the_intents_current_success() -> None:
    stream = Stream().outcome(Outcome.REQUIRES_ACTION, next_action={"type": "redirect"})
    stale = stripe("payment_intent.payment_failed", last_payment_error={"code": "card_declined"})
    current = with_current_state(stale, intent("succeeded", amount_received=1000))
    decided = stream.apply(current)
    assert decided is not None and decided.type == ev.PAYMENT_CAPTURED
    assert decided.data["provider_event_type"] == "payment_intent.payment_failed"  # what was received
    assert stream.state.status is Status.CAPTURED


def test_a_stale_success_for_an_intent_still_waiting_applies_nothing() -> None:
    stream = Stream().outcome(Outcome.REQUIRES_ACTION, next_action={"type": "redirect"})
    current = with_current_state(stripe("payment_intent.succeeded", amount_received=1000), intent("requires_action"))
    assert stream.apply(current) is None
    failed = with_current_state(
        stripe("payment_intent.succeeded"), intent("requires_payment_method", last_payment_error={"code": "x"})
    )
    decided = stream.apply(failed)
    assert decided is not None and decided.type == ev.PAYMENT_FAILED


def test_an_authorization_that_needed_action_is_authorized_once_its_intent_awaits_capture() -> None:
    stream = Stream(kind="authorize").outcome(Outcome.REQUIRES_ACTION, next_action={"type": "redirect"})
    assert refetch_reference(stripe("payment_intent.amount_capturable_updated")) == "pi_1"
    current = with_current_state(
        stripe("payment_intent.amount_capturable_updated"), intent("requires_capture", amount_capturable=1000)
    )
    assert current.type == "payment_intent.amount_capturable_updated"
    decided = stream.apply(current)
    assert decided is not None and decided.type == ev.PAYMENT_AUTHORIZED
    assert (stream.state.status, stream.state.amount_authorized, stream.state.amount_captured) == (
        Status.AUTHORIZED,
        1000,
        0,
    )
    assert stream.apply(current) is None  # a repeat
    decisions.request_capture(stream.state, "cmd_cap", 1000, "msg_2", "fp2")  # capturable now: no DomainError


def test_a_refund_total_is_the_charges_current_one() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    stale = stripe("charge.refunded", object_id="ch_1", payment_intent="pi_1", amount_refunded=300)
    decided = stream.apply(with_current_state(stale, {"status": "succeeded", "amount_refunded": 500}))
    assert decided is not None and decided.type == ev.PROVIDER_REFUNDED and decided.data["amount"] == 500


def test_the_charges_current_refunds_name_each_dashboard_refund_a_total_without_a_list_is_made_of() -> None:
    """Webhooks of API versions from 2022-11-15 list no refunds on the charge; the charge re-read does (expanded).
    Its list, read with its total, replaces the payload's (which may be older than the total)."""
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    unlisted = stripe("charge.refunded", object_id="ch_1", payment_intent="pi_1", amount_refunded=500)
    listed = [
        {"id": "re_2", "amount": 300, "status": "succeeded"},
        {"id": "re_1", "amount": 200, "status": "succeeded"},
    ]
    current = {"status": "succeeded", "amount_refunded": 500, "refunds": {"object": "list", "data": listed}}
    stream.apply(with_current_state(unlisted, current))
    assert [(r.provider_reference, r.amount) for r in stream.state.refunds] == [("re_1", 200), ("re_2", 300)]

    stream.apply(stripe("refund.failed", 7, object_id="re_1", payment_intent="pi_1", status="failed"))
    assert (stream.state.amount_refunded, stream.state.refundable) == (300, 700)

    stale = {"object": "list", "data": [{"id": "re_9", "amount": 100}]}
    older = stripe("charge.refunded", object_id="ch_1", payment_intent="pi_1", amount_refunded=100, refunds=stale)
    read = with_current_state(older, {"status": "succeeded", "amount_refunded": 300, "refunds": current["refunds"]})
    assert read.obj["refunds"] == current["refunds"] and read.obj["amount_refunded"] == 300
    unread = with_current_state(older, {"status": "succeeded", "amount_refunded": 300})  # listed none: the payload's
    assert unread.obj["refunds"] == stale


def test_an_authnet_refund_made_elsewhere_is_applied_once_through_its_original() -> None:
    stream = Stream(provider="authnet").outcome(Outcome.APPROVED, amount=1000)
    event = authnet_refund()
    assert event.references() == ["rf_9"]
    assert stream.apply(event) is None  # not read: recorded by webhook-ingest only
    current = with_current_state(
        event, {"ref_trans_id": "pi_1", "settle_amount": 400, "status": "refundPendingSettlement"}
    )
    assert "pi_1" in current.references()
    decided = stream.apply(current)
    assert decided is not None and decided.type == ev.PROVIDER_REFUNDED
    assert (decided.data["amount"], decided.data["provider_reference"]) == (400, "rf_9")
    assert stream.state.status is Status.PARTIALLY_REFUNDED and stream.state.amount_refunded == 400
    assert stream.apply(with_current_state(authnet_refund(), {"ref_trans_id": "pi_1", "settle_amount": 400})) is None


def test_an_authnet_refund_of_ours_or_of_another_payment_changes_nothing() -> None:
    stream = Stream(provider="authnet").outcome(Outcome.APPROVED, amount=1000)
    stream.events.append(decisions.request_refund(stream.state, "cmd_ref", "re_ours", 300, None, "msg_2", "fp2"))
    ours = with_current_state(authnet_refund(), {"ref_trans_id": "pi_1", "settle_amount": 300})
    noted = stream.apply(ours)  # our refund is under way: noted, for its own outcome to settle
    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED
    other = with_current_state(authnet_refund(), {"ref_trans_id": "pi_other", "settle_amount": 300})
    assert stream.apply(other) is None
    answer = ProviderResult(Outcome.APPROVED, reference="rf_9")
    stream.events.extend(decisions.refund_outcome_events(stream.state, "cmd_ref", answer))
    assert stream.events[-1].type == ev.REFUND_SUCCEEDED  # the noted refund was ours: nothing more
    assert stream.state.amount_refunded == 300


def test_the_dispute_is_shown_on_the_transaction() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    assert transaction_json(stream.state)["dispute"] is None
    opened = stripe(
        "charge.dispute.created", second=3, object_id="dp_1", amount=1000, reason="fraudulent", status="needs_response"
    )
    stream.apply(ProviderEvent(**{**opened.__dict__, "obj": {**opened.obj, "created": 1767225600}}))
    stream.apply(
        stripe("charge.dispute.closed", second=9, object_id="dp_1", amount=1000, reason="fraudulent", status="won")
    )
    shown = transaction_json(stream.state)
    assert shown["dispute"] == {
        "status": "won",
        "reason": "fraudulent",
        "amount": 1000,
        "created_at": "2026-01-01T00:00:00.000000Z",  # the dispute's own creation, kept when it closes
    }
    assert shown["status"] == "captured"


class ReadingProvider:
    """Answers `retrieve_payment` with what the provider holds now."""

    name = "stripe"

    def __init__(self, details: dict[str, Any]) -> None:
        self.details = details
        self.reads: list[str] = []

    async def retrieve_payment(self, reference: str, currency: str | None = None) -> ProviderResult:
        self.reads.append(reference)
        return ProviderResult(Outcome.APPROVED, reference, details=self.details)


@pytest.fixture
async def store() -> AsyncIterator[InMemoryEventStore]:
    events = InMemoryEventStore()
    yield events
    await events.close()


async def payment(store: InMemoryEventStore, provider: str, outcome: Outcome, reference: str) -> None:
    result = ProviderResult(outcome, reference=reference, amount=1500 if outcome is Outcome.APPROVED else None)
    await paid_transaction(store, "txn_1", provider, "tok", result)


def apply_message(provider: str, event_type: str, object_id: str, obj: dict[str, Any]) -> Message:
    event_id = str(uuid.uuid4())
    payload: dict[str, Any] = {
        "provider": provider,
        "event_id": event_id,
        "event_type": event_type,
        "object_id": object_id,
        "provider_created": "2026-01-01T00:05:00.000000Z",
        "webhook_stream": f"webhook-{provider}-{event_id}",
        "object": {"id": object_id, **obj},
    }
    command = Command(type="apply_provider_event", workspace="", actor="w", command_id=event_id, payload=payload)
    return Message(body=command.model_dump())


async def test_the_worker_applies_the_read_state_not_the_stale_payload(store: InMemoryEventStore) -> None:
    provider = ReadingProvider({"status": "succeeded", "object": {"id": "pi_b", "status": "succeeded"}})
    providers: dict[str, Any] = {"stripe": provider}
    worker = TransactionsWorker(store, providers, TransactionsSettings())
    await payment(store, "stripe", Outcome.REQUIRES_ACTION, "pi_b")
    stale = apply_message("stripe", "payment_intent.payment_failed", "pi_b", {"status": "requires_payment_method"})
    reply = await worker.handle(stale)
    assert reply["body"] == {"outcome": ev.PAYMENT_CAPTURED, "transaction_id": "txn_1"}
    assert provider.reads == ["pi_b"]


async def test_the_worker_resolves_an_authnet_refund_through_its_original(store: InMemoryEventStore) -> None:
    provider = ReadingProvider({"ref_trans_id": "6001", "settle_amount": 500, "status": "refundPendingSettlement"})
    provider.name = "authnet"
    providers: dict[str, Any] = {"authnet": provider}
    worker = TransactionsWorker(store, providers, TransactionsSettings())
    await payment(store, "authnet", Outcome.APPROVED, "6001")
    reply = await worker.handle(apply_message("authnet", "net.authorize.payment.refund.created", "7001", {}))
    assert reply["body"] == {"outcome": ev.PROVIDER_REFUNDED, "transaction_id": "txn_1"}
    transaction = Transaction.from_events(await store.read("transaction-txn_1"))
    assert transaction is not None and transaction.amount_refunded == 500
    again = await worker.handle(apply_message("authnet", "net.authorize.payment.refund.created", "7001", {}))
    assert again["body"]["outcome"] == "nothing_to_apply"  # found by its own transId now, known already


class YenReadingProvider:
    """Authorize.net holding a refund of 500 yen (settleAmount 500) of transaction 6001: amounts are read in the
    currency the reader names, as the adapter does."""

    name = "authnet"

    def __init__(self) -> None:
        self.currencies: list[str | None] = []

    async def retrieve_payment(self, reference: str, currency: str | None = None) -> ProviderResult:
        self.currencies.append(currency)
        settled = to_minor_units(Decimal(500), currency or "usd")
        details = {"ref_trans_id": "6001", "settle_amount": settled, "status": "refundPendingSettlement"}
        return ProviderResult(Outcome.APPROVED, reference, details=details)


async def test_a_refund_made_elsewhere_is_read_in_its_originals_currency(store: InMemoryEventStore) -> None:
    provider = YenReadingProvider()
    providers: dict[str, Any] = {"authnet": provider}
    worker = TransactionsWorker(store, providers, TransactionsSettings())
    result = ProviderResult(Outcome.APPROVED, reference="6001", amount=1500)
    await paid_transaction(store, "txn_1", "authnet", "tok", result, currency="jpy")

    reply = await worker.handle(apply_message("authnet", "net.authorize.payment.refund.created", "7001", {}))

    assert reply["body"] == {"outcome": ev.PROVIDER_REFUNDED, "transaction_id": "txn_1"}  # was a discrepancy: 50,000
    transaction = Transaction.from_events(await store.read("transaction-txn_1"))
    assert transaction is not None and (transaction.amount_refunded, transaction.status) == (
        500,
        Status.PARTIALLY_REFUNDED,
    )
    assert provider.currencies == [None, "jpy"]  # the first read only finds the original
