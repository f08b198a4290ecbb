"""A `customer.subscription.updated` webhook is applied as the provider reports the subscription when asked
(its payload may be stale); when the provider cannot be asked, the payload stands."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from payments_billing.main import build_worker
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


class Stripeish:
    """Answers creations; `update_subscription` with no change answers the subscription as it stands now."""

    name = "stripe"

    def __init__(self, now: dict[str, Any] | None) -> None:
        self.now = now
        self.asked: list[SubscriptionChange] = []

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, "cus_R1", details={"default_payment_method": "pm_R1"})

    async def update_customer(self, reference: str, request: CustomerRequest) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def delete_customer(self, reference: str, idempotency_key: str) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def check_customer_deletable(self, reference: str, ours: Sequence[str]) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        details = {"status": "active", "current_period_start": 1_800_000_000, "current_period_end": 1_802_592_000}
        return ProviderResult(Outcome.APPROVED, "sub_R1", details=details)

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult:
        self.asked.append(change)
        if self.now is None:
            raise ConnectionError("unreachable")
        return ProviderResult(Outcome.APPROVED, reference, details=self.now)

    async def cancel_subscription(self, reference: str, at_period_end: bool, idempotency_key: str) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)


async def send(worker: BillingWorker, command_type: str, payload: dict[str, Any]) -> Any:
    command_id = str(uuid.uuid4())
    if command_type == "create_customer":
        payload = {"customer_id": ids.derived_id("cus", command_id), **payload}
    if command_type == "create_subscription":
        payload = {"subscription_id": ids.derived_id("sub", command_id), **payload}
    command = Command(type=command_type, workspace="ws_r", actor="u", command_id=command_id, payload=payload)
    return await worker.handle(Message(body=command.model_dump()))


async def subscription_after_update(provider: Stripeish) -> dict[str, Any]:
    worker = build_worker(
        InMemoryEventStore(),
        {"stripe": provider},
        BillingSettings(payments_default_provider="stripe", stripe_api_key="sk_test_unit"),
    )
    customer = (await send(worker, "create_customer", {"email": "r@example.com", "provider": "stripe"}))["body"]
    plan = {"customer_id": customer["id"], "amount": 100, "currency": "usd", "interval": "month"}
    subscription = (await send(worker, "create_subscription", plan))["body"]
    stale = {"id": "sub_R1", "status": "active", "cancel_at_period_end": False, "items": {"data": [{"quantity": 2}]}}
    payload = {
        "provider": "stripe",
        "event_id": "evt_r1",
        "event_type": "customer.subscription.updated",
        "provider_created": "2027-02-01T00:00:00.000000Z",
        "object": stale,
    }
    command = Command(
        type="apply_provider_event", workspace="", actor="webhook:stripe", command_id=str(uuid.uuid4()), payload=payload
    )
    await worker.handle(Message(body=command.model_dump()))
    return dict((await send(worker, "get_subscription", {"subscription_id": subscription["id"]}))["body"])


async def test_the_provider_answer_replaces_a_stale_payload() -> None:
    provider = Stripeish({"status": "active", "cancel_at_period_end": True, "quantity": 7})
    after = await subscription_after_update(provider)
    assert (after["cancel_at_period_end"], after["quantity"]) == (True, 7)
    assert [change.idempotency_key for change in provider.asked] == ["refetch-evt_r1"]
    assert provider.asked[0].quantity is None and provider.asked[0].cancel_at_period_end is None


async def test_the_payload_stands_when_the_provider_cannot_be_asked() -> None:
    after = await subscription_after_update(Stripeish(None))
    assert (after["cancel_at_period_end"], after["quantity"]) == (False, 2)
