"""A customer changed at the provider (Stripe `customer.updated`, Authorize.net `net.authorize.customer.updated`
with its profile re-fetched): the decision (pure) and the billing worker applying it in the provider's order.
The providers here are stand-ins that answer creations and reads (the component under test is the worker)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from payments_billing import customer as customers
from payments_billing.customer import Customer, authnet_profile_changes, decide_reported_update
from payments_billing.events import DomainEvent
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
from payments_shared.providers.stripe_redrive import OPERATION_TAG

CUSTOMER = Customer(
    id="cus_ours",
    workspace="ws_a",
    email="a@example.com",
    provider="stripe",
    created_at="2027-01-01T00:00:00.000000Z",
    updated_at="2027-01-01T00:00:00.000000Z",
    name="Ada",
    metadata={"tier": "gold", "keep": "yes"},
)


def test_an_event_payload_changes_what_differs_and_merges_metadata() -> None:
    """A payload alone (the provider not re-read) may predate a PUT of ours: merged, it removes no key the PUT set."""
    reported = {"email": "b@example.com", "name": "Ada", "phone": None, "metadata": {"tier": "silver", "keep": ""}}
    event = decide_reported_update(CUSTOMER, "ws_a", reported, "2027-02-01T00:00:00.000000Z", "now")
    assert event is not None and event.type == customers.UPDATED
    assert event.data["changes"] == {"email": "b@example.com", "metadata": {"tier": "silver"}}
    assert event.data["provider_created"] == "2027-02-01T00:00:00.000000Z"


def test_a_customer_re_read_from_the_provider_takes_its_metadata_as_it_is() -> None:
    """A key deleted at Stripe is deleted here; a client's own key named as our re-drive tag (which the report
    leaves out: Stripe's copy of it may be the tag) keeps its value."""
    ours = Customer(**{**CUSTOMER.__dict__, "metadata": {"tier": "gold", "keep": "yes", OPERATION_TAG: "client's"}})
    reported = {"metadata": {"tier": "silver"}}
    event = decide_reported_update(ours, "ws_a", reported, "2027-02-01T00:00:00.000000Z", "now", held_now=True)
    assert event is not None and event.data["changes"] == {"metadata": {"tier": "silver", OPERATION_TAG: "client's"}}
    emptied = decide_reported_update(CUSTOMER, "ws_a", {"metadata": {}}, "2027-02-01T00:00:00Z", "now", held_now=True)
    assert emptied is not None and emptied.data["changes"] == {"metadata": {}}


def test_nothing_is_recorded_for_no_change_another_workspace_or_a_deleted_customer() -> None:
    same = {"email": "a@example.com", "metadata": {"tier": "gold"}}
    assert decide_reported_update(CUSTOMER, "ws_a", same, "2027-02-01T00:00:00Z", "now") is None
    assert decide_reported_update(CUSTOMER, "ws_b", {"email": "x@example.com"}, "2027-02-01T00:00:00Z", "now") is None
    gone = Customer(**{**CUSTOMER.__dict__, "deleted": True})
    assert decide_reported_update(gone, "ws_a", {"email": "x@example.com"}, "2027-02-01T00:00:00Z", "now") is None
    assert decide_reported_update(None, "ws_a", {"email": "x@example.com"}, "2027-02-01T00:00:00Z", "now") is None


def test_a_report_older_than_the_one_applied_changes_nothing() -> None:
    newer = Customer(**{**CUSTOMER.__dict__, "provider_event_at": "2027-02-02T00:00:00.000000Z"})
    older = decide_reported_update(newer, "ws_a", {"email": "old@example.com"}, "2027-02-01T00:00:00.000000Z", "now")
    assert older is None


def test_an_authnet_profile_reports_email_and_a_description_not_the_name_written_in_its_place() -> None:
    assert authnet_profile_changes({"email": "p@example.com", "description": "Ada"}, CUSTOMER) == {
        "email": "p@example.com"
    }
    assert authnet_profile_changes({"email": None, "description": "VIP"}, CUSTOMER) == {"description": "VIP"}


def test_interpret_customer_updates() -> None:
    stripe_obj = {"id": "cus_1", "email": "e@example.com", "name": None, "metadata": {"a": 1}, "balance": 0}
    report = interpret({"provider": "stripe", "event_type": "customer.updated", "object": stripe_obj})
    assert report is not None and not report.deleted
    assert report.changes == {"email": "e@example.com", "name": None, "metadata": {"a": "1"}}
    authnet = interpret({"provider": "authnet", "event_type": "net.authorize.customer.updated", "object": {"id": 9}})
    assert authnet is not None and authnet.reference == "9" and authnet.changes == {}


class ProviderStandIn:
    """Answers creations (every billing method exists: the worker only takes complete billing providers)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, "1001")

    async def update_customer(self, reference: str, request: CustomerRequest) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def delete_customer(self, reference: str, idempotency_key: str) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def check_customer_deletable(self, reference: str, ours: Sequence[str]) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        return ProviderResult(Outcome.PERMANENT, message="not here")

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult:
        return ProviderResult(Outcome.PERMANENT, message="not here")

    async def cancel_subscription(self, reference: str, at_period_end: bool, idempotency_key: str) -> ProviderResult:
        return ProviderResult(Outcome.PERMANENT, message="not here")


class ProfileStandIn(ProviderStandIn):
    """Also reads a customer profile back (`retrieve_customer`), as the Authorize.net adapter does."""

    def __init__(self, name: str, profile: dict[str, Any]) -> None:
        super().__init__(name)
        self.profile = profile

    async def retrieve_customer(self, reference: str) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference, details=dict(self.profile))


async def send(worker: BillingWorker, command_type: str, payload: dict[str, Any]) -> Any:
    command_id = str(uuid.uuid4())
    if command_type == "create_customer":
        payload = {"customer_id": ids.derived_id("cus", command_id), **payload}
    command = Command(type=command_type, workspace="ws_a", actor="u", command_id=command_id, payload=payload)
    return await worker.handle(Message(body=command.model_dump()))


async def webhook(worker: BillingWorker, provider: str, event_type: str, obj: dict[str, Any], created: str) -> Any:
    event_id = str(uuid.uuid4())
    payload = {"provider": provider, "event_id": event_id, "event_type": event_type, "object": obj}
    payload["provider_created"] = created
    command = Command(
        type="apply_provider_event", workspace="", actor=f"webhook:{provider}", command_id=event_id, payload=payload
    )
    return await worker.handle(Message(body=command.model_dump()))


async def customer_with(provider: ProviderStandIn) -> tuple[BillingWorker, str]:
    settings = BillingSettings(
        payments_default_provider="stripe" if provider.name == "stripe" else "authnet",
        stripe_api_key="sk_test_unit",  # the stand-ins ignore credentials; settings require the default's
        authnet_api_login_id="login",
        authnet_transaction_key="key",
    )
    worker = build_worker(InMemoryEventStore(), {provider.name: provider}, settings)
    created = await send(worker, "create_customer", {"email": "a@example.com", "name": "Ada"})
    return worker, str(created["body"]["id"])


async def test_stripe_customer_updated_applies_in_the_providers_order() -> None:
    worker, customer_id = await customer_with(ProviderStandIn("stripe"))
    newer = {"id": "1001", "email": "new@example.com", "phone": "+15550100", "metadata": {"plan": "pro"}}
    assert (await webhook(worker, "stripe", "customer.updated", newer, "2027-02-02T00:00:00.000000Z"))["body"] == {
        "applied": True
    }
    older: dict[str, Any] = {"id": "1001", "email": "old@example.com", "phone": None, "metadata": {}}
    late = await webhook(worker, "stripe", "customer.updated", older, "2027-02-01T00:00:00.000000Z")
    assert late["body"]["applied"] is False
    shown = (await send(worker, "get_customer", {"customer_id": customer_id}))["body"]
    assert (shown["email"], shown["phone"], shown["metadata"]) == ("new@example.com", "+15550100", {"plan": "pro"})


async def test_authnet_customer_updated_applies_the_refetched_profile() -> None:
    profile = {"customer_profile_id": "1001", "email": "profile@example.com", "description": "VIP"}
    worker, customer_id = await customer_with(ProfileStandIn("authnet", profile))
    reply = await webhook(worker, "authnet", "net.authorize.customer.updated", {"id": "1001"}, "2027-02-02T00:00:00Z")
    assert reply["body"] == {"applied": True}
    shown = (await send(worker, "get_customer", {"customer_id": customer_id}))["body"]
    assert (shown["email"], shown["description"], shown["name"]) == ("profile@example.com", "VIP", "Ada")


async def test_authnet_customer_updated_without_a_read_is_recorded_only_and_deleted_applies() -> None:
    worker, customer_id = await customer_with(ProviderStandIn("authnet"))
    reply = await webhook(worker, "authnet", "net.authorize.customer.updated", {"id": "1001"}, "2027-02-02T00:00:00Z")
    assert reply["body"]["applied"] is False
    await webhook(worker, "authnet", "net.authorize.customer.deleted", {"id": "1001"}, "2027-02-03T00:00:00Z")
    assert (await send(worker, "get_customer", {"customer_id": customer_id}))["status"] == 404


async def test_stripe_customer_updated_applies_the_customer_as_stripe_holds_it_now() -> None:
    current = {"object": {"id": "1001", "email": "now@example.com", "name": "Ada", "metadata": {}}}
    worker, customer_id = await customer_with(ProfileStandIn("stripe", current))
    stale = {"id": "1001", "email": "stale@example.com", "name": "Ada", "metadata": {}}
    await webhook(worker, "stripe", "customer.updated", stale, "2027-02-02T00:00:00.000000Z")
    shown = (await send(worker, "get_customer", {"customer_id": customer_id}))["body"]
    assert shown["email"] == "now@example.com"


async def test_stripe_customer_updated_takes_the_metadata_stripe_holds_now_without_our_tag() -> None:
    held = {"id": "1001", "email": "a@example.com", "name": "Ada", "metadata": {"tier": "gold", OPERATION_TAG: "k"}}
    worker, customer_id = await customer_with(ProfileStandIn("stripe", {"object": held}))
    added = await send(worker, "update_customer", {"customer_id": customer_id, "metadata": {"tier": "gold", "x": "1"}})
    assert added["body"]["metadata"] == {"tier": "gold", "x": "1"}
    # "x" deleted at Stripe since; the event's payload is stale, the customer is re-read.
    stale = {**held, "metadata": {"tier": "gold", "x": "1"}}
    reply = await webhook(worker, "stripe", "customer.updated", stale, "2027-02-02T00:00:00.000000Z")
    assert reply["body"] == {"applied": True}
    shown = (await send(worker, "get_customer", {"customer_id": customer_id}))["body"]
    assert shown["metadata"] == {"tier": "gold"}


async def test_a_late_stripe_payload_that_cannot_be_re_read_removes_no_key_our_newer_put_added() -> None:
    worker, customer_id = await customer_with(ProviderStandIn("stripe"))
    await send(worker, "update_customer", {"customer_id": customer_id, "metadata": {"added": "by-put"}})
    before_the_put = {"id": "1001", "email": "a@example.com", "metadata": {}}
    await webhook(worker, "stripe", "customer.updated", before_the_put, "2027-02-01T00:00:00.000000Z")
    shown = (await send(worker, "get_customer", {"customer_id": customer_id}))["body"]
    assert shown["metadata"] == {"added": "by-put"}


def test_a_change_naming_a_field_of_a_newer_version_is_folded_without_it() -> None:
    created = customers.decide_create(
        None,
        customers.NewCustomer(id="cus_1", workspace="ws_a", email="a@example.com", provider="sandbox"),
        "2027-01-01T00:00:00.000000Z",
    )
    updated = DomainEvent(
        customers.UPDATED, {"changes": {"name": "Bo", "tax_ids": ["x"]}, "updated_at": "2027-01-02T00:00:00.000000Z"}
    )
    customer = customers.fold([created, updated])
    assert customer is not None and (customer.name, customer.updated_at) == ("Bo", "2027-01-02T00:00:00.000000Z")
