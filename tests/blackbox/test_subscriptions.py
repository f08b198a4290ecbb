"""Every subscription route of API.md over a real socket against the embedded server: create (billed, trial,
declined → incomplete, price), get, update, cancel at period end then immediately, the 409s after `canceled`,
validation, permissions, other workspaces, idempotency."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.blackbox.concurrent_updates import put_concurrently, updates_in_order
from tests.blackbox.server import API, Server, new_key
from tests.blackbox.test_customers import BILLING_PERMISSIONS, Billing, error_of
from tests.support.services import stream_event_types

SUBSCRIPTION_FIELDS = {
    "id",
    "object",
    "customer_id",
    "status",
    "amount",
    "currency",
    "interval",
    "interval_count",
    "quantity",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "canceled_at",
    "provider",
    "provider_reference",
    "metadata",
    "created_at",
    "updated_at",
}


# A price alone: the base request's amount, currency and interval left out.
PRICE_ONLY = {"price": "price_sandbox_monthly", "amount": None, "currency": None, "interval": None}


@pytest.fixture
def billing(http: httpx.Client) -> Billing:
    return Billing(http)


@pytest.fixture
def customer(billing: Billing) -> dict[str, Any]:
    return billing.customer(payment_method="pm_card_visa")


def subscription(billing: Billing, customer_id: str, **body: Any) -> dict[str, Any]:
    response = billing.subscribe(customer_id=customer_id, **body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_create_bills_the_default_payment_method_and_is_active(billing: Billing, customer: dict[str, Any]) -> None:
    response = billing.subscribe(
        customer_id=customer["id"], amount=1500, currency="EUR", interval="month", quantity=2, metadata={"plan": "pro"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) >= SUBSCRIPTION_FIELDS
    assert body["id"].startswith("sub_") and body["object"] == "subscription"
    assert (body["customer_id"], body["status"], body["provider"]) == (customer["id"], "active", "sandbox")
    assert (body["amount"], body["currency"], body["interval"], body["interval_count"], body["quantity"]) == (
        1500,
        "eur",
        "month",
        1,
        2,
    )
    assert (body["cancel_at_period_end"], body["canceled_at"], body["metadata"]) == (False, None, {"plan": "pro"})
    assert body["provider_reference"]
    start, end = moment(body["current_period_start"]), moment(body["current_period_end"])
    assert 28 <= (end - start).days <= 31 and end.day in (start.day, 28, 29, 30, 31)
    assert billing.call("GET", f"subscriptions/{body['id']}").json() == body


def test_a_trial_does_not_bill_and_its_period_is_the_trial(billing: Billing) -> None:
    declining = billing.customer(payment_method="pm_card_chargeDeclined")
    body = subscription(billing, declining["id"], trial_days=14)
    assert body["status"] == "trialing"
    assert moment(body["current_period_end"]) - moment(body["current_period_start"]) == timedelta(days=14)


def test_a_declined_first_invoice_leaves_it_incomplete(billing: Billing) -> None:
    declining = billing.customer(payment_method="pm_card_chargeDeclined")
    assert subscription(billing, declining["id"])["status"] == "incomplete"
    assert subscription(billing, declining["id"], payment_method="pm_card_visa")["status"] == "active"
    visa = billing.customer(payment_method="pm_card_visa")
    for method in ("pm_card_chargeDeclinedInsufficientFunds", "pm_card_authenticationRequired"):
        assert subscription(billing, visa["id"], payment_method=method)["status"] == "incomplete"


def test_without_any_payment_method_it_is_400(billing: Billing) -> None:
    bare = billing.customer()
    assert error_of(billing.subscribe(customer_id=bare["id"]), 400)["param"] == "payment_method"
    assert subscription(billing, bare["id"], trial_days=7)["status"] == "trialing"


def test_a_processing_error_is_502(billing: Billing, customer: dict[str, Any]) -> None:
    response = billing.subscribe(customer_id=customer["id"], payment_method="pm_card_processingError")
    assert error_of(response, 502)["type"] == "provider_error"


def test_an_interval_of_up_to_three_years_is_stripes_limit(billing: Billing, customer: dict[str, Any]) -> None:
    triennial = billing.subscribe(customer_id=customer["id"], interval="month", interval_count=36)
    assert triennial.status_code == 201, triennial.text
    body = triennial.json()
    start, end = (datetime.fromisoformat(body[name]) for name in ("current_period_start", "current_period_end"))
    assert (end.year - start.year, end.month, end.day) == (3, start.month, start.day)
    assert (
        error_of(billing.subscribe(customer_id=customer["id"], interval="day", interval_count=1096), 400)["param"]
        == "interval_count"
    )


def test_a_price_instead_of_an_amount(billing: Billing, customer: dict[str, Any]) -> None:
    response = billing.call("POST", "subscriptions", {"customer_id": customer["id"], "price": "price_sandbox_yearly"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["amount"], body["currency"], body["interval"], body["interval_count"]) == (10000, "usd", "year", 1)
    unknown = billing.call("POST", "subscriptions", {"customer_id": customer["id"], "price": "price_nope"})
    assert error_of(unknown, 400)["param"] == "price"


def test_an_empty_metadata_value_on_create_sets_no_key(billing: Billing, customer: dict[str, Any]) -> None:
    created = subscription(billing, customer["id"], metadata={"a": "", "b": "1"})
    assert created["metadata"] == {"b": "1"}
    assert billing.call("GET", f"subscriptions/{created['id']}").json()["metadata"] == {"b": "1"}


def test_update_quantity_amount_metadata_and_price(billing: Billing, customer: dict[str, Any]) -> None:
    created = subscription(billing, customer["id"], metadata={"a": "1", "b": "2"})
    path = f"subscriptions/{created['id']}"
    response = billing.call("PUT", path, {"quantity": 5, "amount": 2000, "metadata": {"a": "", "c": "3"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["quantity"], body["amount"], body["metadata"], body["status"]) == (
        5,
        2000,
        {"b": "2", "c": "3"},
        "active",
    )
    priced = billing.call("PUT", path, {"price": "price_sandbox_weekly"}).json()
    assert (priced["amount"], priced["interval"]) == (300, "week")
    assert billing.call("GET", path).json() == priced


def test_cancel_at_period_end_then_immediately_then_409(
    billing: Billing, customer: dict[str, Any], server: Server
) -> None:
    created = subscription(billing, customer["id"])
    path = f"subscriptions/{created['id']}"
    later = billing.call("POST", f"{path}/cancel", {"at_period_end": True})
    assert later.status_code == 200, later.text
    # As Stripe: canceled_at is when the cancel was asked, while it stays active until the period ends.
    assert (later.json()["status"], later.json()["cancel_at_period_end"]) == ("active", True)
    assert later.json()["canceled_at"] == later.json()["updated_at"]
    undone = billing.call("PUT", path, {"cancel_at_period_end": False}).json()
    assert (undone["cancel_at_period_end"], undone["canceled_at"]) == (False, None)
    again = billing.call("PUT", path, {"cancel_at_period_end": True}).json()
    assert (again["cancel_at_period_end"], again["canceled_at"]) == (True, again["updated_at"])
    assert again["canceled_at"] > later.json()["canceled_at"]
    now = billing.call("POST", f"{path}/cancel", {"at_period_end": False})
    assert now.status_code == 200
    assert now.json()["status"] == "canceled" and now.json()["canceled_at"] > again["canceled_at"]
    for method, route, body in (
        ("POST", f"{path}/cancel", {}),
        ("POST", f"{path}/cancel", {"at_period_end": True}),
        ("PUT", path, {"quantity": 2}),
        ("PUT", path, {"metadata": {"a": "b"}, "quantity": 2}),
        ("PUT", path, {"cancel_at_period_end": False}),
    ):
        assert error_of(billing.call(method, route, body), 409)["type"] == "conflict"
    assert billing.call("GET", path).json()["status"] == "canceled"
    assert stream_event_types(server.data_dir, f"subscription-{created['id']}") == [
        "SubscriptionCreated",
        "SubscriptionCancelRequested",
        "SubscriptionCancelScheduled",
        "SubscriptionUpdateRequested",
        "SubscriptionUpdated",
        "SubscriptionUpdateRequested",
        "SubscriptionUpdated",
        "SubscriptionCancelRequested",
        "SubscriptionCanceled",
    ]


def test_a_canceled_subscription_still_takes_new_metadata(billing: Billing, customer: dict[str, Any]) -> None:
    """As at Stripe ("a canceled subscription can only update its cancellation_details and metadata")."""
    created = subscription(billing, customer["id"], metadata={"order": "1"})
    path = f"subscriptions/{created['id']}"
    canceled = billing.call("POST", f"{path}/cancel", {}).json()

    updated = billing.call("PUT", path, {"metadata": {"refund_ticket": "T-9", "order": ""}})

    assert updated.status_code == 200, updated.text
    assert updated.json()["metadata"] == {"refund_ticket": "T-9"}
    assert {name: updated.json()[name] for name in ("status", "canceled_at", "quantity", "amount")} == {
        name: canceled[name] for name in ("status", "canceled_at", "quantity", "amount")
    }
    assert billing.call("GET", path).json()["metadata"] == {"refund_ticket": "T-9"}


def test_cancel_without_a_body_is_immediate(billing: Billing, customer: dict[str, Any]) -> None:
    created = subscription(billing, customer["id"])
    response = billing.http.post(
        f"{API}/subscriptions/{created['id']}/cancel", headers={"Authorization": f"Bearer {billing.token()}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"


def test_trialing_and_incomplete_subscriptions_can_be_canceled(billing: Billing) -> None:
    declining = billing.customer(payment_method="pm_card_chargeDeclined")
    for created in (subscription(billing, declining["id"], trial_days=3), subscription(billing, declining["id"])):
        response = billing.call("POST", f"subscriptions/{created['id']}/cancel", {})
        assert response.json()["status"] == "canceled"


def test_an_incomplete_subscription_changes_no_billing_until_paid(billing: Billing) -> None:
    # Stripe: "You cannot update a subscription in `incomplete` status in a way that results in a new invoice".
    declining = billing.customer(payment_method="pm_card_chargeDeclined")
    path = f"subscriptions/{subscription(billing, declining['id'])['id']}"
    for change in ({"quantity": 2}, {"amount": 2500}, {"price": "price_sandbox_weekly"}):
        error = error_of(billing.call("PUT", path, change), 409)
        assert (error["type"], error["code"]) == ("conflict", "subscription_incomplete")
    changed = billing.call("PUT", path, {"metadata": {"note": "x"}, "quantity": 1, "cancel_at_period_end": True})
    assert changed.status_code == 200, changed.text  # metadata, the same quantity, the cancel
    shown = changed.json()
    assert (shown["status"], shown["quantity"], shown["metadata"]) == ("incomplete", 1, {"note": "x"})


def test_unknown_subscription_is_404_on_every_route(billing: Billing) -> None:
    for method, route, body in (
        ("GET", "subscriptions/sub_nope", None),
        ("PUT", "subscriptions/sub_nope", {"quantity": 2}),
        ("POST", "subscriptions/sub_nope/cancel", {}),
    ):
        assert error_of(billing.call(method, route, body), 404)["type"] == "not_found"
    assert error_of(billing.subscribe(customer_id="cus_nope"), 404)["param"] == "customer_id"


def test_another_workspace_gets_404_on_every_route(
    billing: Billing, customer: dict[str, Any], http: httpx.Client
) -> None:
    created = subscription(billing, customer["id"])
    other = Billing(http)
    for method, route, body in (
        ("GET", f"subscriptions/{created['id']}", None),
        ("PUT", f"subscriptions/{created['id']}", {"quantity": 2}),
        ("POST", f"subscriptions/{created['id']}/cancel", {}),
    ):
        assert error_of(other.call(method, route, body), 404)["type"] == "not_found"
    assert error_of(other.subscribe(customer_id=customer["id"]), 404)["param"] == "customer_id"
    assert billing.call("GET", f"subscriptions/{created['id']}").json() == created


ROUTES = [
    ("POST", "subscriptions", "subscription:create"),
    ("GET", "subscriptions/{id}", "subscription:read"),
    ("PUT", "subscriptions/{id}", "subscription:update"),
    ("POST", "subscriptions/{id}/cancel", "subscription:cancel"),
]


@pytest.mark.parametrize(("method", "route", "permission"), ROUTES)
def test_each_route_needs_its_permission(
    billing: Billing, customer: dict[str, Any], method: str, route: str, permission: str
) -> None:
    created = subscription(billing, customer["id"])
    path = route.format(id=created["id"])
    bodies = {
        "subscriptions": {"customer_id": customer["id"], "amount": 100, "currency": "usd", "interval": "week"},
        "subscriptions/{id}": {"quantity": 2},
        "subscriptions/{id}/cancel": {},
    }
    body = None if method == "GET" else bodies[route]
    others = [name for name in BILLING_PERMISSIONS if name != permission] + ["payments:admin"]
    assert error_of(billing.call(method, path, body, permissions=others), 403)["type"] == "permission_error"
    assert billing.call(method, path, body, permissions=[permission]).status_code in (200, 201)


@pytest.mark.parametrize(("method", "route", "permission"), ROUTES)
def test_each_route_needs_a_token(billing: Billing, method: str, route: str, permission: str) -> None:
    response = billing.http.request(method, f"{API}/{route.format(id='sub_x')}", json={})
    assert error_of(response, 401)["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"price": "price_sandbox_monthly", "amount": 100}, "amount"),
        (
            {"price": "price_sandbox_monthly", "amount": None, "currency": None, "interval": None, "interval_count": 2},
            "interval_count",
        ),
        ({"price": "price_sandbox_monthly", "amount": None, "interval": None}, "currency"),
        ({"interval": None}, "interval"),
        ({"currency": None}, "currency"),
        ({"amount": None}, "amount"),
        ({"interval": "fortnight"}, "interval"),
        ({"interval_count": 0}, "interval_count"),
        ({"interval": "month", "interval_count": 37}, "interval_count"),  # Stripe's limit: three years
        ({"interval": "week", "interval_count": 157}, "interval_count"),
        ({"interval": "year", "interval_count": 4}, "interval_count"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": "2"}, "quantity"),
        ({"amount": 99_999_999, "quantity": 2}, "quantity"),  # a period's charge above API.md's largest amount
        ({**PRICE_ONLY, "price": "price_sandbox_yearly", "quantity": 10_000}, "quantity"),  # 10000 × 10000
        ({"amount": 0}, "amount"),
        ({"amount": 100_000_000}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": "1000"}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "xyz"}, "currency"),
        ({"trial_days": 0}, "trial_days"),
        ({"trial_days": 731}, "trial_days"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"payment_method": "pm_card_unknown"}, "payment_method"),
        ({"customer_id": 12}, "customer_id"),
        ({"plan": "gold"}, "plan"),
    ],
)
def test_invalid_create_is_400_naming_the_field(
    billing: Billing, customer: dict[str, Any], body: dict[str, Any], param: str
) -> None:
    request = {"customer_id": customer["id"], "amount": 1500, "currency": "usd", "interval": "month", **body}
    request = {name: value for name, value in request.items() if value is not None}
    error = error_of(billing.call("POST", "subscriptions", request), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_missing_customer_id_is_400(billing: Billing) -> None:
    error = error_of(billing.call("POST", "subscriptions", {"amount": 100, "currency": "usd", "interval": "day"}), 400)
    assert error["param"] == "customer_id"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": 1_000_000}, "quantity"),
        ({"amount": 99_999_999}, "amount"),
        ({"price": "price_sandbox_monthly", "amount": 100}, "amount"),
        ({"amount": -1}, "amount"),
        ({"cancel_at_period_end": "yes"}, "cancel_at_period_end"),
        ({"quantity": None}, "quantity"),
        ({"status": "active"}, "status"),
        ({"metadata": {"note": "4242 4242 4242 4242"}}, "metadata.note"),
    ],
)
def test_invalid_update_is_400(
    billing: Billing, customer: dict[str, Any], body: dict[str, Any], param: str | None
) -> None:
    created = subscription(billing, customer["id"], quantity=2)
    error = error_of(billing.call("PUT", f"subscriptions/{created['id']}", body), 400)
    assert error.get("param") == param
    assert billing.call("GET", f"subscriptions/{created['id']}").json() == created


def test_put_is_held_to_fifty_metadata_keys_once_merged(billing: Billing, customer: dict[str, Any]) -> None:
    created = subscription(billing, customer["id"], metadata={f"k{i}": "v" for i in range(50)})
    refused = billing.call("PUT", f"subscriptions/{created['id']}", {"quantity": 3, "metadata": {"k50": "v"}})
    assert error_of(refused, 400)["param"] == "metadata"
    assert billing.call("GET", f"subscriptions/{created['id']}").json() == created  # the provider was not asked
    swapped = billing.call("PUT", f"subscriptions/{created['id']}", {"metadata": {"k0": "", "k50": "v"}})
    assert swapped.status_code == 200, swapped.text
    assert len(swapped.json()["metadata"]) == 50 and "k50" in swapped.json()["metadata"]


def test_a_price_of_another_interval_starts_a_new_period(billing: Billing, customer: dict[str, Any]) -> None:
    created = subscription(billing, customer["id"])  # monthly
    changed = billing.call("PUT", f"subscriptions/{created['id']}", {"price": "price_sandbox_yearly"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["interval"], body["amount"]) == ("year", 10000)
    start, end = moment(body["current_period_start"]), moment(body["current_period_end"])
    assert start >= moment(created["current_period_start"])
    assert (end - start).days in (365, 366)


def test_a_new_price_is_held_to_the_period_limit_and_the_currency(
    billing: Billing, customer: dict[str, Any], server: Server
) -> None:
    created = subscription(billing, customer["id"], amount=1, currency="EUR", quantity=100_000)
    path = f"subscriptions/{created['id']}"
    other_currency = billing.call("PUT", path, {"price": "price_sandbox_weekly"})
    assert error_of(other_currency, 400)["param"] == "price"  # Stripe never changes a subscription's currency
    usd = subscription(billing, customer["id"], amount=1, quantity=100_000)
    usd_path = f"subscriptions/{usd['id']}"
    too_much = billing.call("PUT", usd_path, {"price": "price_sandbox_yearly"})  # 10000 × 100000 a period
    assert error_of(too_much, 400)["param"] == "price"
    with_quantity = billing.call("PUT", usd_path, {"price": "price_sandbox_monthly", "quantity": 100_000})
    assert error_of(with_quantity, 400)["param"] == "quantity"
    assert billing.call("GET", path).json() == created
    assert billing.call("GET", usd_path).json() == usd
    assert "SubscriptionUpdated" not in stream_event_types(server.data_dir, f"subscription-{usd['id']}")
    fits = billing.call("PUT", usd_path, {"price": "price_sandbox_monthly", "quantity": 99_999})
    assert fits.status_code == 200, fits.text
    assert (fits.json()["amount"], fits.json()["quantity"], fits.json()["currency"]) == (1000, 99_999, "usd")


def test_a_new_interval_during_a_trial_keeps_the_trial(billing: Billing, customer: dict[str, Any]) -> None:
    created = subscription(billing, customer["id"], **{**PRICE_ONLY, "trial_days": 30})
    assert created["status"] == "trialing" and created["current_period_end"] == created["trial_end"]
    changed = billing.call("PUT", f"subscriptions/{created['id']}", {"price": "price_sandbox_weekly"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["status"], body["interval"], body["trial_end"]) == ("trialing", "week", created["trial_end"])
    assert (body["current_period_start"], body["current_period_end"]) == (
        created["current_period_start"],
        created["trial_end"],
    )


def test_concurrent_updates_apply_one_at_a_time_and_none_keeps_a_409(
    billing: Billing, customer: dict[str, Any], server: Server
) -> None:
    created = subscription(billing, customer["id"])
    bodies = [{"quantity": n} for n in range(2, 32)]
    replies = put_concurrently(server.base_url, billing.token(), f"/subscriptions/{created['id']}", bodies)
    updates = updates_in_order(server.data_dir, f"subscription-{created['id']}", "Subscription")
    applied = [event.data["changes"]["quantity"] for event in updates]
    assert sorted(applied) == list(range(2, 32))  # each one once
    assert all(reply.json()["quantity"] in applied for reply in replies)
    assert billing.call("GET", f"subscriptions/{created['id']}").json()["quantity"] == applied[-1]


def test_invalid_cancel_is_400(billing: Billing, customer: dict[str, Any]) -> None:
    created = subscription(billing, customer["id"])
    error = error_of(billing.call("POST", f"subscriptions/{created['id']}/cancel", {"at_period_end": "no"}), 400)
    assert error["param"] == "at_period_end"


def test_card_data_is_refused_on_create(billing: Billing, customer: dict[str, Any]) -> None:
    response = billing.subscribe(customer_id=customer["id"], metadata={"card": "4242424242424242"})
    assert error_of(response, 400)["code"] == "raw_card_data"
    assert "4242424242424242" not in response.text


def test_every_write_replays_with_its_key(billing: Billing, customer: dict[str, Any]) -> None:
    key = new_key()
    first = billing.subscribe(key, customer_id=customer["id"])
    again = billing.subscribe(key, customer_id=customer["id"])
    assert (first.status_code, again.status_code) == (201, 201) and again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert error_of(billing.subscribe(key, customer_id=customer["id"], quantity=3), 422)["type"] == "idempotency_error"
    path = f"subscriptions/{first.json()['id']}"
    update_key, cancel_key = new_key(), new_key()
    updated = billing.call("PUT", path, {"quantity": 4}, update_key)
    assert billing.call("PUT", path, {"quantity": 4}, update_key).content == updated.content
    canceled = billing.call("POST", f"{path}/cancel", {}, cancel_key)
    replayed = billing.call("POST", f"{path}/cancel", {}, cancel_key)
    assert replayed.status_code == 200 and replayed.content == canceled.content  # not a 409: the same request
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert error_of(billing.call("POST", f"{path}/cancel", {"at_period_end": True}, cancel_key), 422)
