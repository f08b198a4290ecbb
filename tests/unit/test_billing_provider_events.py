"""Webhook events applied by the billing worker (`apply_provider_event`): found through the provider reference,
applied once per event and in the provider's order; unknown objects change nothing. The provider here is a
stand-in for Stripe that answers creations (the component under test is the worker and its store)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from payments_billing.main import build_worker
from payments_billing.provider_events import interpret
from payments_billing.settings import BillingSettings
from payments_billing.worker import BillingWorker
from payments_shared import ids
from payments_shared.broker.port import Message
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.messages import Command
from payments_shared.providers.port import (
    CustomerRequest,
    Outcome,
    ProviderResult,
    SubscriptionChange,
    SubscriptionRequest,
)


class StripeStandIn:
    name = "stripe"

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, "cus_S1", details={"default_payment_method": "pm_S1"})

    async def update_customer(self, reference: str, request: CustomerRequest) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def delete_customer(self, reference: str, idempotency_key: str) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def check_customer_deletable(self, reference: str, ours: Sequence[str]) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        details = {"status": "active", "current_period_start": 1_800_000_000, "current_period_end": 1_802_592_000}
        return ProviderResult(Outcome.APPROVED, "sub_S1", details=details)

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def cancel_subscription(self, reference: str, at_period_end: bool, idempotency_key: str) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)


async def send(worker: BillingWorker, command_type: str, payload: dict[str, Any], workspace: str = "ws_a") -> Any:
    command_id = str(uuid.uuid4())
    if command_type == "create_customer":
        payload = {"customer_id": ids.derived_id("cus", command_id), **payload}
    if command_type == "create_subscription":
        payload = {"subscription_id": ids.derived_id("sub", command_id), **payload}
    command = Command(type=command_type, workspace=workspace, actor="u", command_id=command_id, payload=payload)
    return await worker.handle(Message(body=command.model_dump()))


async def webhook(worker: BillingWorker, event_id: str, event_type: str, obj: dict[str, Any], created: str) -> Any:
    payload = {"provider": "stripe", "event_id": event_id, "event_type": event_type, "object": obj}
    payload["provider_created"] = created
    command_id = str(uuid.uuid5(uuid.NAMESPACE_URL, event_id))
    command = Command(
        type="apply_provider_event", workspace="", actor="webhook:stripe", command_id=command_id, payload=payload
    )
    return await worker.handle(Message(body=command.model_dump()))


class BillingStandIn(StripeStandIn):
    """Stripe as it bills: the subscription's status it holds (which follows the latest invoice) is what a
    re-read of the subscription gives, as an invoice event's is re-read before it is applied."""

    def __init__(self, status: str = "active") -> None:
        self.status = status

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference, details={"status": self.status})


async def setup(
    stripe: StripeStandIn | None = None,
) -> tuple[BillingWorker, InMemoryEventStore, dict[str, Any], dict[str, Any]]:
    store = InMemoryEventStore()
    worker = build_worker(
        store,
        {"stripe": stripe or StripeStandIn()},
        BillingSettings(payments_default_provider="stripe", stripe_api_key="sk_test_unit"),
    )
    customer = (await send(worker, "create_customer", {"email": "a@example.com", "provider": "stripe"}))["body"]
    plan = {"customer_id": customer["id"], "amount": 100, "currency": "usd", "interval": "month"}
    subscription = (await send(worker, "create_subscription", plan))["body"]
    return worker, store, customer, subscription


async def test_invoice_outcomes_move_the_subscription_once_and_in_order() -> None:
    stripe = BillingStandIn()
    worker, store, _, subscription = await setup(stripe)
    assert subscription["current_period_start"].startswith("2027-01-15")
    failed = {"id": "in_1", "subscription": "sub_S1"}
    stripe.status = "past_due"
    assert (await webhook(worker, "evt_1", "invoice.payment_failed", failed, "2027-02-15T00:00:00Z"))["body"]["applied"]
    again = await webhook(worker, "evt_1", "invoice.payment_failed", failed, "2027-02-15T00:00:00Z")
    assert again["body"]["applied"]
    stale = await webhook(worker, "evt_0", "invoice.paid", failed, "2027-02-14T00:00:00Z")
    assert stale["body"] == {"applied": False, "reason": "nothing to change"}
    got = await send(worker, "get_subscription", {"subscription_id": subscription["id"]})
    assert got["body"]["status"] == "past_due"
    paid = {"id": "in_2", "parent": {"subscription_details": {"subscription": "sub_S1"}}}
    stripe.status = "active"
    await webhook(worker, "evt_2", "invoice.paid", paid, "2027-02-16T00:00:00Z")
    got = await send(worker, "get_subscription", {"subscription_id": subscription["id"]})
    assert got["body"]["status"] == "active"
    history = await store.read(f"subscription-{subscription['id']}")
    assert [event.type for event in history] == [
        "SubscriptionCreated",
        "SubscriptionStatusChanged",
        "SubscriptionStatusChanged",
    ]
    assert history[1].metadata["workspace"] == "ws_a" and history[1].metadata["actor"] == "webhook:stripe"


class TrialingStandIn(BillingStandIn):
    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        created = await super().create_subscription(request)
        status = "trialing" if request.trial_days else "active"
        return ProviderResult(Outcome.APPROVED, created.reference, details={**created.details, "status": status})


async def test_the_free_invoice_that_opens_a_trial_leaves_the_subscription_trialing() -> None:
    """Stripe opens a trial with an invoice of 0.00, paid at once (`invoice.paid`, `invoice.payment_succeeded`):
    nothing was paid for, the subscription stays `trialing` until the trial ends."""
    worker = build_worker(
        InMemoryEventStore(),
        {"stripe": (stripe := TrialingStandIn("trialing"))},
        BillingSettings(payments_default_provider="stripe", stripe_api_key="sk_test_unit"),
    )
    customer = (await send(worker, "create_customer", {"email": "a@example.com", "provider": "stripe"}))["body"]
    plan = {"customer_id": customer["id"], "amount": 100, "currency": "usd", "interval": "month", "trial_days": 14}
    subscription = (await send(worker, "create_subscription", plan))["body"]
    assert subscription["status"] == "trialing"
    free = {
        "id": "in_trial",
        "subscription": "sub_S1",
        "billing_reason": "subscription_create",
        "status": "paid",
        "total": 0,
        "amount_due": 0,
        "amount_paid": 0,
    }
    await webhook(worker, "evt_1", "invoice.payment_succeeded", free, "2027-01-15T00:00:01Z")
    await webhook(worker, "evt_2", "invoice.paid", free, "2027-01-15T00:00:01Z")
    got = await send(worker, "get_subscription", {"subscription_id": subscription["id"]})
    assert got["body"]["status"] == "trialing"

    # The trial ends: the first invoice that asks for money, paid, makes it active.
    first = {**free, "id": "in_first", "billing_reason": "subscription_cycle", "total": 100, "amount_due": 100}
    stripe.status = "active"
    await webhook(worker, "evt_3", "invoice.paid", {**first, "amount_paid": 100}, "2027-01-29T00:00:00Z")
    got = await send(worker, "get_subscription", {"subscription_id": subscription["id"]})
    assert got["body"]["status"] == "active"


async def test_a_deleted_subscription_is_canceled_then_ignored() -> None:
    worker, _, _, subscription = await setup()
    obj = {"id": "sub_S1", "status": "canceled", "items": {"data": []}}
    await webhook(worker, "evt_1", "customer.subscription.deleted", obj, "2027-02-15T00:00:00Z")
    got = await send(worker, "get_subscription", {"subscription_id": subscription["id"]})
    assert got["body"]["status"] == "canceled"
    later = await webhook(
        worker, "evt_2", "customer.subscription.updated", {**obj, "status": "active"}, "2027-03-01T00:00:00Z"
    )
    assert later["body"]["applied"] is False


async def test_a_subscription_update_reports_periods_and_flags() -> None:
    worker, _, _, subscription = await setup()
    obj = {
        "id": "sub_S1",
        "status": "active",
        "cancel_at_period_end": True,
        "items": {
            "data": [
                {
                    "id": "si_1",
                    "quantity": 4,
                    "current_period_start": 1_802_592_000,
                    "current_period_end": 1_805_270_400,
                }
            ]
        },
    }
    await webhook(worker, "evt_1", "customer.subscription.updated", obj, "2027-02-15T00:00:00Z")
    body = (await send(worker, "get_subscription", {"subscription_id": subscription["id"]}))["body"]
    assert (body["cancel_at_period_end"], body["quantity"]) == (True, 4)
    assert body["current_period_start"].startswith("2027-02-14")


async def test_period_bounds_a_datetime_cannot_hold_are_left_out_not_raised() -> None:
    worker, _, _, subscription = await setup()
    before = (await send(worker, "get_subscription", {"subscription_id": subscription["id"]}))["body"]
    obj = {
        "id": "sub_S1",
        "status": "past_due",
        "current_period_start": 10**20,  # an OverflowError in the worker before
        "current_period_end": float("inf"),  # the stdlib parser reads `Infinity`
    }
    answer = await webhook(worker, "evt_1", "customer.subscription.updated", obj, "2027-02-15T00:00:00Z")
    assert answer["status"] == 200, answer
    body = (await send(worker, "get_subscription", {"subscription_id": subscription["id"]}))["body"]
    assert body["status"] == "past_due"
    assert (body["current_period_start"], body["current_period_end"]) == (
        before["current_period_start"],
        before["current_period_end"],
    )


async def test_customer_deleted_at_the_provider() -> None:
    worker, _, customer, _ = await setup()
    await webhook(worker, "evt_1", "customer.deleted", {"id": "cus_S1"}, "2027-02-15T00:00:00Z")
    assert (await send(worker, "get_customer", {"customer_id": customer["id"]}))["status"] == 404


async def test_unknown_objects_and_events_change_nothing() -> None:
    worker, store, _, _ = await setup()
    before = [event async for event in store.read_all()]
    unknown = await webhook(
        worker, "evt_1", "invoice.payment_failed", {"subscription": "sub_other"}, "2027-02-15T00:00:00Z"
    )
    assert unknown["body"] == {"applied": False, "reason": "unknown object"}
    ignored = await webhook(worker, "evt_2", "customer.source.created", {"id": "src_1"}, "2027-02-15T00:00:00Z")
    assert ignored["body"]["applied"] is False
    assert [event async for event in store.read_all()] == before


def test_interpret() -> None:
    assert (
        interpret({"provider": "authnet", "event_type": "net.authorize.customer.deleted", "object": {"id": 77}})
        is not None
    )
    assert interpret({"provider": "other", "event_type": "x", "object": {}}) is None
    assert interpret({"provider": "stripe", "event_type": "invoice.paid", "object": {"id": "in_1"}}) is None


def test_a_stripe_customers_re_drive_tag_is_not_reported_as_the_clients_metadata() -> None:
    """Our customers carry `payments_operation` at Stripe (the key that created them, so that a re-drive past 24 h
    finds them): Stripe's copy, not the client's metadata."""
    tagged = {"id": "cus_S1", "object": "customer", "metadata": {"tier": "gold", "payments_operation": "cmd-1"}}
    report = interpret({"provider": "stripe", "event_type": "customer.updated", "object": tagged})
    assert report is not None and report.changes["metadata"] == {"tier": "gold"}
