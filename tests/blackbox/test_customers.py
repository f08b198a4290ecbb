"""Every customer route of API.md over a real socket against the embedded server: create, get, update (merge),
delete (then 404 everywhere, history kept), validation, permissions, other workspaces, idempotency."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox.concurrent_updates import put_concurrently, updates_in_order
from tests.blackbox.server import API, Server, embedded_server, mint_token, new_key, new_workspace
from tests.support.services import stream_event_types

CUSTOMER_PERMISSIONS = ["customer:create", "customer:read", "customer:update", "customer:delete"]
SUBSCRIPTION_PERMISSIONS = ["subscription:create", "subscription:read", "subscription:update", "subscription:cancel"]
BILLING_PERMISSIONS = CUSTOMER_PERMISSIONS + SUBSCRIPTION_PERMISSIONS
CUSTOMER_FIELDS = {
    "id",
    "object",
    "email",
    "name",
    "phone",
    "description",
    "metadata",
    "provider",
    "provider_reference",
    "default_payment_method",
    "created_at",
    "updated_at",
}
VISA = "4242424242424242"


@dataclass
class Billing:
    """A client of one workspace holding every billing permission unless a call passes `permissions`."""

    http: httpx.Client
    workspace: str = field(default_factory=new_workspace)

    def token(self, permissions: list[str] | None = None) -> str:
        return mint_token(self.workspace, BILLING_PERMISSIONS if permissions is None else permissions)

    def call(
        self,
        method: str,
        route: str,
        body: Any = None,
        key: str | None = None,
        permissions: list[str] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token(permissions)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.request(method, f"{API}/{route}", json=body, headers=headers)

    def create_customer(self, key: str | None = None, **body: Any) -> httpx.Response:
        return self.call("POST", "customers", {"email": "jenny@example.com", **body}, key)

    def customer(self, **body: Any) -> dict[str, Any]:
        response = self.create_customer(**body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def subscribe(self, key: str | None = None, **body: Any) -> httpx.Response:
        return self.call("POST", "subscriptions", {"amount": 1500, "currency": "usd", "interval": "month", **body}, key)


@pytest.fixture
def billing(http: httpx.Client) -> Billing:
    return Billing(http)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_create_returns_the_customer(billing: Billing) -> None:
    response = billing.create_customer(
        email="jenny@example.com",
        name="Jenny Rosen",
        phone="+15555550100",
        description="VIP",
        metadata={"crm": "42"},
        payment_method="pm_card_visa",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == CUSTOMER_FIELDS
    assert body["id"].startswith("cus_") and body["object"] == "customer"
    assert (body["email"], body["name"], body["phone"], body["description"]) == (
        "jenny@example.com",
        "Jenny Rosen",
        "+15555550100",
        "VIP",
    )
    assert body["metadata"] == {"crm": "42"}
    assert body["provider"] == "sandbox" and body["provider_reference"]
    assert body["default_payment_method"] == "pm_card_visa"
    assert body["created_at"] == body["updated_at"]
    got = billing.call("GET", f"customers/{body['id']}")
    assert got.status_code == 200 and got.json() == body


def test_minimal_customer_has_nulls_and_empty_metadata(billing: Billing) -> None:
    body = billing.customer(provider="sandbox")
    assert (body["name"], body["phone"], body["description"], body["default_payment_method"]) == (None,) * 4
    assert body["metadata"] == {}


def test_an_empty_metadata_value_on_create_sets_no_key(billing: Billing) -> None:
    """As at Stripe, where "" unsets a key on create as on update: the customer holds no such key (a Stripe
    customer would not, and its next `customer.updated` would drop it here)."""
    created = billing.customer(metadata={"a": "", "b": "1"})
    assert created["metadata"] == {"b": "1"}
    assert billing.call("GET", f"customers/{created['id']}").json()["metadata"] == {"b": "1"}


def test_put_merges(billing: Billing) -> None:
    created = billing.customer(name="Jenny", metadata={"a": "1", "b": "2"})
    response = billing.call(
        "PUT",
        f"customers/{created['id']}",
        {"name": "Jenny R.", "metadata": {"b": "", "c": "3"}, "payment_method": "pm_card_mastercard"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["email"]) == ("Jenny R.", "jenny@example.com")
    assert body["metadata"] == {"a": "1", "c": "3"}
    assert body["default_payment_method"] == "pm_card_mastercard"
    assert body["created_at"] == created["created_at"] and body["updated_at"] > created["updated_at"]
    assert billing.call("GET", f"customers/{created['id']}").json() == body


FIFTY = {f"k{i}": "v" for i in range(50)}


def test_concurrent_puts_apply_one_at_a_time_and_none_keeps_a_409(billing: Billing, server: Server) -> None:
    created = billing.customer()
    bodies = [{"metadata": {f"k{n}": "v"}} for n in range(30)]
    replies = put_concurrently(server.base_url, billing.token(), f"/customers/{created['id']}", bodies)
    updates = updates_in_order(server.data_dir, f"customer-{created['id']}", "Customer")
    assert len(updates) == 30 and len(updates[-1].data["changes"]["metadata"]) == 30
    for body, reply in zip(bodies, replies, strict=True):
        assert set(body["metadata"]) <= set(reply.json()["metadata"])
    assert billing.call("GET", f"customers/{created['id']}").json()["metadata"] == {f"k{n}": "v" for n in range(30)}


def test_put_is_held_to_fifty_metadata_keys_once_merged(billing: Billing) -> None:
    created = billing.customer(metadata=FIFTY)
    refused = billing.call("PUT", f"customers/{created['id']}", {"name": "N", "metadata": {"k50": "v"}})
    assert error_of(refused, 400)["param"] == "metadata"
    assert billing.call("GET", f"customers/{created['id']}").json() == created  # nothing changed
    swapped = billing.call("PUT", f"customers/{created['id']}", {"metadata": {"k0": "", "k50": "v"}})
    assert swapped.status_code == 200, swapped.text
    assert len(swapped.json()["metadata"]) == 50 and "k50" in swapped.json()["metadata"]


def test_put_may_clear_an_optional_field_but_not_the_email(billing: Billing) -> None:
    created = billing.customer(name="Jenny", phone="+15555550100", description="VIP")
    cleared = billing.call("PUT", f"customers/{created['id']}", {"name": None})
    assert cleared.status_code == 200 and cleared.json()["name"] is None
    # As at Stripe, an empty value unsets a field too.
    emptied = billing.call("PUT", f"customers/{created['id']}", {"phone": "", "description": ""}).json()
    assert (emptied["phone"], emptied["description"]) == (None, None)
    for empty in ("", None):
        error = error_of(billing.call("PUT", f"customers/{created['id']}", {"email": empty}), 400)
        assert error["param"] == "email"


def test_an_empty_optional_field_on_create_is_left_unset(billing: Billing) -> None:
    created = billing.customer(name="", phone="", description="")
    assert (created["name"], created["phone"], created["description"]) == (None, None, None)


def test_put_cannot_change_the_provider(billing: Billing) -> None:
    created = billing.customer()
    assert billing.call("PUT", f"customers/{created['id']}", {"provider": "sandbox"}).status_code == 200
    error = error_of(billing.call("PUT", f"customers/{created['id']}", {"provider": "stripe"}), 400)
    assert error["param"] == "provider"


def test_delete_then_404_on_every_route_with_history_kept(billing: Billing, server: Server) -> None:
    created = billing.customer()
    customer_id = created["id"]
    response = billing.call("DELETE", f"customers/{customer_id}")
    assert response.status_code == 200
    assert response.json() == {"id": customer_id, "object": "customer", "deleted": True}
    for method, body in (("GET", None), ("PUT", {"name": "x"}), ("DELETE", None)):
        error = error_of(billing.call(method, f"customers/{customer_id}", body), 404)
        assert error["type"] == "not_found"
    error = error_of(billing.subscribe(customer_id=customer_id, payment_method="pm_card_visa"), 404)
    assert error["param"] == "customer_id"
    assert stream_event_types(server.data_dir, f"customer-{customer_id}") == ["CustomerCreated", "CustomerDeleted"]


async def _cancel_and_delete(base_url: str, token: str, subscription_id: str, customer_id: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=f"{base_url}{API}", headers={"Authorization": f"Bearer {token}"}) as http:
        cancel = http.post(f"/subscriptions/{subscription_id}/cancel", json={})
        return list(await asyncio.gather(cancel, http.delete(f"/customers/{customer_id}")))


def test_a_delete_racing_a_cancel_of_its_subscription_still_deletes(billing: Billing, server: Server) -> None:
    """The delete found the subscription live, the cancel sent beside it canceled it first, and the delete's own
    cancel of it was then refused: 409 subscription_canceled, the customer not deleted. Canceled is all the delete
    needs of it."""
    for _ in range(5):
        customer = billing.customer(payment_method="pm_card_visa")
        subscribed = billing.subscribe(customer_id=customer["id"])
        assert subscribed.status_code == 201, subscribed.text
        subscription_id = subscribed.json()["id"]
        canceled, deleted = asyncio.run(
            _cancel_and_delete(server.base_url, billing.token(), subscription_id, customer["id"])
        )
        assert (deleted.status_code, deleted.json()) == (
            200,
            {"id": customer["id"], "object": "customer", "deleted": True},
        )
        if canceled.status_code != 200:  # the delete canceled it first
            assert error_of(canceled, 409)["code"] == "subscription_canceled"
        assert billing.call("GET", f"customers/{customer['id']}").status_code == 404
        assert billing.call("GET", f"subscriptions/{subscription_id}").json()["status"] == "canceled"


@pytest.mark.parametrize(("method", "suffix"), [("GET", "/cus_doesnotexist"), ("PUT", "/cus_doesnotexist")])
def test_unknown_customer_is_404(billing: Billing, method: str, suffix: str) -> None:
    body = {"name": "x"} if method == "PUT" else None
    assert error_of(billing.call(method, f"customers{suffix}", body), 404)["type"] == "not_found"
    assert billing.call("DELETE", "customers/cus_doesnotexist").status_code == 404


def test_another_workspace_gets_404_on_every_route(billing: Billing, http: httpx.Client) -> None:
    created = billing.customer(payment_method="pm_card_visa")
    other = Billing(http)
    for method, body in (("GET", None), ("PUT", {"name": "x"}), ("DELETE", None)):
        assert error_of(other.call(method, f"customers/{created['id']}", body), 404)["type"] == "not_found"
    assert error_of(other.subscribe(customer_id=created["id"]), 404)["param"] == "customer_id"
    assert billing.call("GET", f"customers/{created['id']}").json() == created


ROUTES = [
    ("POST", "customers", {"email": "jenny@example.com"}, "customer:create"),
    ("GET", "customers/{id}", None, "customer:read"),
    ("PUT", "customers/{id}", {"name": "x"}, "customer:update"),
    ("DELETE", "customers/{id}", None, "customer:delete"),
]


@pytest.mark.parametrize(("method", "route", "body", "permission"), ROUTES)
def test_each_route_needs_its_permission(billing: Billing, method: str, route: str, body: Any, permission: str) -> None:
    created = billing.customer()
    path = route.format(id=created["id"])
    others = [name for name in BILLING_PERMISSIONS if name != permission] + ["payments:admin"]
    error = error_of(billing.call(method, path, body, permissions=others), 403)
    assert error["type"] == "permission_error"
    assert billing.call(method, path, body, permissions=[permission]).status_code in (200, 201)


@pytest.mark.parametrize(("method", "route", "body", "permission"), ROUTES)
def test_each_route_needs_a_token(billing: Billing, method: str, route: str, body: Any, permission: str) -> None:
    response = billing.http.request(method, f"{API}/{route.format(id='cus_x')}", json=body)
    assert error_of(response, 401)["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "two@@example.com"}, "email"),
        ({"email": "jenny@example"}, "email"),
        ({"email": "a\u0000b@example.com"}, "email"),  # control characters: never part of an address
        ({"email": "a\u007fb@example.com"}, "email"),
        ({"email": "a\u0085b@example.com"}, "email"),
        ({"email": "jenny@example.com\n"}, "email"),  # a final newline: `$` alone would let it through
        ({"email": 42}, "email"),
        ({"email": "a@example.com", "name": "n" * 257}, "name"),
        ({"email": "a@example.com", "phone": "1" * 21}, "phone"),
        ({"email": "a@example.com", "description": "d" * 1001}, "description"),
        ({"email": "a@example.com", "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"email": "a@example.com", "metadata": {"k": 1}}, "metadata.k"),
        ({"email": "a@example.com", "metadata": {"k" * 41: "v"}}, "metadata." + "k" * 41),
        ({"email": "a@example.com", "provider": "paypal"}, "provider"),
        ({"email": "a@example.com", "payment_method": 7}, "payment_method"),
        ({"email": "a@example.com", "payment_method": "pm_card_unknown"}, "payment_method"),
        (
            {"email": "a@example.com", "payment_method": {"data_descriptor": 1, "data_value": "v"}},
            "payment_method.data_descriptor",
        ),
        (
            {"email": "a@example.com", "payment_method": {"data_descriptor": "d", "data_value": 5}},
            "payment_method.data_value",
        ),
        ({"email": "a@example.com", "colour": "red"}, "colour"),
    ],
)
def test_invalid_create_is_400_naming_the_field(billing: Billing, body: dict[str, Any], param: str) -> None:
    error = error_of(billing.call("POST", "customers", body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_a_payment_method_the_provider_refuses_is_one_error_on_every_route(billing: Billing) -> None:
    # The sandbox refuses an unknown payment method: a charge said `parameter_invalid`, a customer
    # `invalid_request_error` (the type, for want of a code).
    unknown = "pm_card_unknown"
    body = {"amount": 500, "currency": "usd", "payment_method": unknown}
    charge = billing.call("POST", "charge", body, permissions=["payments:charge"])
    customer = billing.create_customer(payment_method=unknown)
    updated = billing.call("PUT", f"customers/{billing.customer()['id']}", {"payment_method": unknown})
    errors = [error_of(response, 400) for response in (charge, customer, updated)]
    assert {(error["type"], error["code"], error["param"]) for error in errors} == {
        ("invalid_request_error", "parameter_invalid", "payment_method")
    }


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com", "description": f"card {VISA}"},
        {"email": "a@example.com", "metadata": {"note": "4242-4242-4242-4242"}},
        {"email": "a@example.com", "name": "4242 4242 4242 4242"},
    ],
)
def test_card_data_is_refused_and_never_echoed(billing: Billing, body: dict[str, Any]) -> None:
    response = billing.call("POST", "customers", body)
    assert error_of(response, 400)["code"] == "raw_card_data"
    assert "4242" not in response.text


def test_card_data_is_refused_on_update(billing: Billing) -> None:
    created = billing.customer()
    response = billing.call("PUT", f"customers/{created['id']}", {"description": VISA})
    assert error_of(response, 400)["code"] == "raw_card_data"


def test_malformed_json_and_unknown_update_field(billing: Billing) -> None:
    created = billing.customer()
    response = billing.http.put(
        f"{API}/customers/{created['id']}",
        content=b"{not json",
        headers={"Authorization": f"Bearer {billing.token()}", "Content-Type": "application/json"},
    )
    assert error_of(response, 400)["type"] == "invalid_request_error"
    assert error_of(billing.call("PUT", f"customers/{created['id']}", {"id": "cus_other"}), 400)["param"] == "id"


def test_create_replays_with_the_same_key_and_refuses_another_body(billing: Billing) -> None:
    key = new_key()
    first = billing.create_customer(key, name="Jenny")
    again = billing.create_customer(key, name="Jenny")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    error = error_of(billing.create_customer(key, name="Someone else"), 422)
    assert error["type"] == "idempotency_error"


def test_the_same_key_in_another_workspace_is_another_request(billing: Billing, http: httpx.Client) -> None:
    key = new_key()
    mine = billing.create_customer(key).json()
    theirs = Billing(http).create_customer(key).json()
    assert mine["id"] != theirs["id"]


def test_update_and_delete_replay_with_the_same_key(billing: Billing) -> None:
    created = billing.customer()
    path = f"customers/{created['id']}"
    key = new_key()
    first = billing.call("PUT", path, {"name": "A"}, key)
    billing.call("PUT", path, {"name": "B"})
    again = billing.call("PUT", path, {"name": "A"}, key)
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert billing.call("GET", path).json()["name"] == "B"  # the replay changed nothing
    assert error_of(billing.call("PUT", path, {"name": "C"}, key), 422)["type"] == "idempotency_error"
    delete_key = new_key()
    deleted = billing.call("DELETE", path, key=delete_key)
    replayed = billing.call("DELETE", path, key=delete_key)
    assert replayed.status_code == 200 and replayed.content == deleted.content
    assert replayed.headers["Idempotent-Replayed"] == "true"


def test_delete_takes_no_parameters(billing: Billing) -> None:
    created = billing.customer()
    error = error_of(billing.call("DELETE", f"customers/{created['id']}", {"force": True}), 400)
    assert error["param"] == "force"


def test_a_bad_idempotency_key_is_400(billing: Billing) -> None:
    error = error_of(billing.create_customer("k" * 256), 400)
    assert error["param"] == "Idempotency-Key"


def test_charge_a_customer_with_its_default_payment_method(billing: Billing) -> None:
    created = billing.customer(payment_method="pm_card_visa")
    token = mint_token(billing.workspace, ["payments:charge"])
    response = billing.call(
        "POST", "charge", {"amount": 500, "currency": "usd", "customer_id": created["id"]}, token=token
    )
    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["customer_id"]) == ("captured", created["id"])


@pytest.mark.parametrize("route", ["charge", "authorize"])
def test_charging_another_workspaces_or_a_deleted_customer_is_404(
    billing: Billing, http: httpx.Client, route: str
) -> None:
    theirs = Billing(http).customer(payment_method="pm_card_visa")
    gone = billing.customer(payment_method="pm_card_visa")
    billing.call("DELETE", f"customers/{gone['id']}")
    token = mint_token(billing.workspace, ["payments:admin"])
    for customer_id in (theirs["id"], gone["id"], "cus_nope"):
        body = {"amount": 500, "currency": "usd", "payment_method": "pm_card_visa", "customer_id": customer_id}
        error = error_of(billing.call("POST", route, body, token=token), 404)
        assert error["param"] == "customer_id"


@pytest.mark.parametrize("route", ["charge", "authorize"])
def test_a_charge_of_a_customer_deleted_since_is_replayed_by_its_key(billing: Billing, route: str) -> None:
    """API.md: a repeat gets the first response. The customer it named being gone changes nothing for that key;
    a new key naming that customer is 404."""
    created = billing.customer(payment_method="pm_card_visa")
    token = mint_token(billing.workspace, ["payments:admin"])
    body = {"amount": 500, "currency": "usd", "customer_id": created["id"]}
    key = new_key()
    first = billing.call("POST", route, body, key=key, token=token)
    assert first.status_code == 201, first.text
    assert billing.call("DELETE", f"customers/{created['id']}").status_code == 200

    repeated = billing.call("POST", route, body, key=key, token=token)
    other_body = billing.call("POST", route, {**body, "amount": 501}, key=key, token=token)
    new_request = billing.call("POST", route, body, key=new_key(), token=token)

    assert repeated.status_code == 201 and repeated.content == first.content
    assert repeated.headers["Idempotent-Replayed"] == "true"
    assert error_of(other_body, 422)["type"] == "idempotency_error"
    assert error_of(new_request, 404)["param"] == "customer_id"


def test_embedded_mode_finishes_a_change_its_crash_left_unanswered(tmp_path: Path) -> None:
    """The process is killed after appending CustomerCreated and before keeping the reply; the restarted process
    finishes the command at start-up, so the client's retry gets the one customer that was made."""
    crash = f"billing.before_record:{tmp_path / 'crashed-once'}"
    key, body = new_key(), {"email": "crash@example.com", "payment_method": "pm_card_visa"}
    with (
        embedded_server(tmp_path, PAYMENTS_FAULT_CRASH_ONCE=crash) as first,
        httpx.Client(base_url=first.base_url) as http,
    ):
        client = Billing(http)
        with pytest.raises(httpx.HTTPError):
            client.create_customer(key, **body)
        assert first.processes[0].popen.wait(timeout=30) != 0
        workspace = client.workspace
    with embedded_server(tmp_path) as second, httpx.Client(base_url=second.base_url, timeout=30) as http:
        retried = Billing(http, workspace).create_customer(key, **body)
        assert retried.status_code == 201, retried.text
        assert retried.headers["Idempotent-Replayed"] == "true"
        assert stream_event_types(second.data_dir, f"customer-{retried.json()['id']}") == ["CustomerCreated"]
