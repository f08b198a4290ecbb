"""Property: whatever a signed provider event says about a subscription or a customer, the report billing records
keeps the object's fields their API types (a subscription's quantity a positive integer, cancel_at_period_end a
boolean, the period bounds API timestamps, its status inside the state diagram; a customer's texts texts or null,
its metadata strings). A webhook's payload is JSON from outside."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from payments_billing import customer as customers
from payments_billing import subscription as domain
from payments_billing.provider_events import interpret
from payments_billing.times import parse_iso

from tests.unit import test_billing_customer
from tests.unit.test_billing_subscription import T0, history
from tests.unit.test_webhook_apply_properties import JSON_VALUES

FIELDS = (
    "status",
    "cancel_at_period_end",
    "quantity",
    "current_period_start",
    "current_period_end",
    "items",
    "canceled_at",
)
EVENT_TYPES = (
    ("stripe", "customer.subscription.updated"),
    ("stripe", "customer.subscription.deleted"),
    ("stripe", "invoice.paid"),
    ("authnet", "net.authorize.customer.subscription.updated"),
    ("authnet", "net.authorize.customer.subscription.suspended"),
    ("authnet", "net.authorize.customer.subscription.terminated"),
)
ITEM = st.fixed_dictionaries({}, optional={name: JSON_VALUES for name in ("quantity", "current_period_end", "id")})


@settings(max_examples=500, deadline=None, derandomize=True)  # stable in CI; 20,000 random ones passed
@given(
    start=st.sampled_from([status for status in domain.STATUSES if status != domain.CANCELED_STATUS]),
    event_type=st.sampled_from(EVENT_TYPES),
    obj=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES | st.fixed_dictionaries({"data": st.lists(ITEM)})),
)
def test_a_reported_change_keeps_the_subscriptions_types(
    start: str, event_type: tuple[str, str], obj: dict[str, Any]
) -> None:
    provider, kind = event_type
    report = interpret({"provider": provider, "event_type": kind, "object": {"id": "sub_S1", **obj}})
    if report is None:
        return
    events = history(start)
    later = "2027-02-01T00:00:00.000000Z"
    event = domain.decide_reported(domain.fold(events), "ws_a", report.changes, later, later)
    if event is not None:
        events.append(event)
    subscription = domain.fold(events)
    assert subscription is not None
    assert subscription.status in domain.STATUSES
    assert subscription.status == start or subscription.status in domain.MOVES[start]
    assert type(subscription.quantity) is int and subscription.quantity >= 1
    assert type(subscription.cancel_at_period_end) is bool
    for bound in (subscription.current_period_start, subscription.current_period_end):
        assert bound is None or parse_iso(bound) is not None
    assert subscription.created_at == T0


CUSTOMER_FIELDS = (*customers.PLAIN_FIELDS, "metadata")


@settings(max_examples=300, deadline=None, derandomize=True)  # stable in CI; 20,000 random ones passed
@given(obj=st.dictionaries(st.sampled_from(CUSTOMER_FIELDS), JSON_VALUES))
def test_a_reported_customer_change_keeps_the_customers_types(obj: dict[str, Any]) -> None:
    report = interpret({"provider": "stripe", "event_type": "customer.updated", "object": {"id": "cus_S1", **obj}})
    assert report is not None
    events = test_billing_customer.created()
    later = test_billing_customer.T1
    event = customers.decide_reported_update(customers.fold(events), "ws_a", report.changes, later, later)
    if event is not None:
        events.append(event)
    customer = customers.fold(events)
    assert customer is not None
    for name in customers.PLAIN_FIELDS:
        assert getattr(customer, name) is None or type(getattr(customer, name)) is str
    assert all(type(key) is str and type(value) is str for key, value in customer.metadata.items())
