"""The Stripe flows through the gateway: `python -m payments_embedded` with `PAYMENTS_DEFAULT_PROVIDER=stripe` and
`STRIPE_API_BASE` pointing at localstripe (flushed before each test). Each flow is checked on both sides: the API's
answer and what localstripe then holds."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox.concurrent_updates import put_concurrently, updates_in_order
from tests.blackbox.server import API, EVERY_PERMISSION, Server, embedded_server, mint_token, new_key, new_workspace
from tests.support.localstripe_server import THREE_D_SECURE_METHOD, flush, running_localstripe

STRIPE_KEY = "sk_test_gatewayDummyKey0123456789abcdef"


@pytest.fixture(scope="module")
def localstripe_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_localstripe(tmp_path_factory.mktemp("localstripe") / "localstripe.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def stripe_server(tmp_path_factory: pytest.TempPathFactory, localstripe_base: str) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("embedded-stripe")
    env = {"PAYMENTS_DEFAULT_PROVIDER": "stripe", "STRIPE_API_KEY": STRIPE_KEY, "STRIPE_API_BASE": localstripe_base}
    with embedded_server(data_dir, RATE_LIMIT_WRITE="600/minute", LOG_LEVEL="DEBUG", **env) as running:
        yield running


@pytest.fixture
def localstripe(localstripe_base: str) -> str:
    flush(localstripe_base)
    return localstripe_base


@pytest.fixture
def token() -> str:
    return mint_token(new_workspace(), EVERY_PERMISSION)


@pytest.fixture
def client(stripe_server: Server, localstripe: str, token: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{stripe_server.base_url}{API}", headers=headers, timeout=30) as http:
        yield http


def stripe_get(localstripe: str, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{localstripe}{path}", params=params, headers={"Authorization": f"Bearer {STRIPE_KEY}"})


def created(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def pay(client: httpx.Client, route: str, amount: int = 1000, method: str = "pm_card_visa", **extra: Any) -> Any:
    return client.post(f"/{route}", json={"amount": amount, "currency": "usd", "payment_method": method, **extra})


def test_charge_is_a_captured_payment_intent(client: httpx.Client, localstripe: str) -> None:
    body = created(pay(client, "charge", 1099, metadata={"order": "7"}))

    assert (body["status"], body["provider"], body["amount_captured"]) == ("captured", "stripe", 1099)
    assert body["provider_reference"].startswith("pi_")
    intent = stripe_get(localstripe, f"/v1/payment_intents/{body['provider_reference']}").json()
    assert (intent["status"], intent["amount"], intent["metadata"]["order"]) == ("succeeded", 1099, "7")
    events = created(client.get(f"/transactions/{body['id']}/events"), 200)["data"]
    recorded = [e["data"].get("details", {}) for e in events]
    assert any(d.get("payment_intent") == body["provider_reference"] for d in recorded)


def test_the_operation_tag_is_at_stripe_but_never_shown_to_the_client(client: httpx.Client, localstripe: str) -> None:
    # Stripe forgets idempotency keys after 24 h: our tag on the PaymentIntent and the Refund is what lets a later
    # re-drive find them. It is ours: the client's transaction shows the client's metadata only.
    charged = created(pay(client, "charge", 1000, metadata={"order": "8"}))
    refunded = created(client.post("/refund", json={"transaction_id": charged["id"], "amount": 300}), 200)

    intent = stripe_get(localstripe, f"/v1/payment_intents/{charged['provider_reference']}").json()
    assert intent["metadata"]["order"] == "8"
    assert intent["metadata"].get("payments_operation")
    refunds = stripe_get(localstripe, "/v1/refunds", payment_intent=charged["provider_reference"]).json()["data"]
    assert [r["metadata"].get("payments_operation") is not None for r in refunds] == [True]
    shown = [charged, refunded, created(client.get(f"/transactions/{charged['id']}"), 200)]
    assert all(body["metadata"] == {"order": "8"} for body in shown)
    assert all("payments_operation" not in json.dumps(body) for body in shown)
    trail = created(client.get(f"/transactions/{charged['id']}/events"), 200)["data"]
    assert "payments_operation" not in json.dumps(trail)


def test_authorize_then_partial_capture(client: httpx.Client, localstripe: str) -> None:
    authorized = created(pay(client, "authorize", 1000))
    assert authorized["status"] == "authorized"

    captured = created(client.post("/capture", json={"transaction_id": authorized["id"], "amount": 600}), 200)

    assert (captured["status"], captured["amount_captured"]) == ("captured", 600)
    intent = stripe_get(localstripe, f"/v1/payment_intents/{authorized['provider_reference']}").json()
    assert (intent["status"], intent["capture_method"]) == ("succeeded", "manual")


def test_authorize_then_void(client: httpx.Client, localstripe: str) -> None:
    authorized = created(pay(client, "authorize", 1000))

    voided = created(client.post("/void", json={"transaction_id": authorized["id"]}), 200)

    assert voided["status"] == "voided"
    intent = stripe_get(localstripe, f"/v1/payment_intents/{authorized['provider_reference']}").json()
    assert intent["status"] == "canceled"


def test_refund_part_then_the_rest(client: httpx.Client, localstripe: str) -> None:
    charged = created(pay(client, "charge", 1000))

    part = created(client.post("/refund", json={"transaction_id": charged["id"], "amount": 300}), 200)
    rest = created(client.post("/refund", json={"transaction_id": charged["id"]}), 200)

    assert (part["status"], part["amount_refunded"]) == ("partially_refunded", 300)
    assert (rest["status"], rest["amount_refunded"], len(rest["refunds"])) == ("refunded", 1000, 2)
    refunds = stripe_get(localstripe, "/v1/refunds", payment_intent=charged["provider_reference"]).json()["data"]
    assert sorted(r["amount"] for r in refunds) == [300, 700]


def test_decline_is_402_with_the_code(client: httpx.Client) -> None:
    response = pay(client, "charge", 1000, "pm_card_chargeCustomerFail")

    error = created(response, 402)["error"]
    assert (error["type"], error["code"], error["decline_code"]) == ("card_error", "card_declined", "card_declined")
    failed = created(client.get(f"/transactions/{error['transaction_id']}"), 200)
    assert failed["status"] == "failed"


def test_three_d_secure_card_requires_action(client: httpx.Client, localstripe: str) -> None:
    method = httpx.post(
        f"{localstripe}/v1/payment_methods",
        data=THREE_D_SECURE_METHOD,
        headers={"Authorization": f"Bearer {STRIPE_KEY}"},
    ).json()

    response = pay(client, "charge", 2000, method["id"])

    assert response.status_code in (200, 201), response.text
    body = response.json()
    assert (body["status"], body["next_action"]["type"]) == ("requires_action", "use_stripe_sdk")
    assert "secret" not in response.text


def test_customer_and_subscription_lifecycle(client: httpx.Client, localstripe: str) -> None:
    customer = created(
        client.post("/customers", json={"email": "ada@example.com", "name": "Ada", "payment_method": "pm_card_visa"})
    )
    assert (customer["provider"], customer["provider_reference"][:4]) == ("stripe", "cus_")
    held = stripe_get(localstripe, f"/v1/customers/{customer['provider_reference']}").json()
    assert held["invoice_settings"]["default_payment_method"].startswith("pm_")
    assert customer["default_payment_method"] == held["invoice_settings"]["default_payment_method"]

    updated = created(client.put(f"/customers/{customer['id']}", json={"name": "Ada Lovelace"}), 200)
    assert updated["name"] == "Ada Lovelace"
    assert stripe_get(localstripe, f"/v1/customers/{customer['provider_reference']}").json()["name"] == "Ada Lovelace"

    subscription = created(
        client.post(
            "/subscriptions",
            json={"customer_id": customer["id"], "amount": 1500, "currency": "usd", "interval": "month", "quantity": 2},
        )
    )
    assert (subscription["status"], subscription["quantity"], subscription["provider_reference"][:4]) == (
        "active",
        2,
        "sub_",
    )
    assert subscription["current_period_end"] is not None
    reference = subscription["provider_reference"]

    changed = created(client.put(f"/subscriptions/{subscription['id']}", json={"quantity": 3}), 200)
    assert changed["quantity"] == 3
    assert stripe_get(localstripe, f"/v1/subscriptions/{reference}").json()["quantity"] == 3

    ending = created(client.post(f"/subscriptions/{subscription['id']}/cancel", json={"at_period_end": True}), 200)
    assert (ending["status"], ending["cancel_at_period_end"]) == ("active", True)

    canceled = created(client.post(f"/subscriptions/{subscription['id']}/cancel", json={}), 200)
    assert canceled["status"] == "canceled"
    assert stripe_get(localstripe, f"/v1/subscriptions/{reference}").json()["status"] == "canceled"

    deleted = created(client.delete(f"/customers/{customer['id']}"), 200)
    assert deleted["deleted"] is True
    assert stripe_get(localstripe, f"/v1/customers/{customer['provider_reference']}").status_code == 404


def test_concurrent_updates_leave_the_api_as_stripe_bills(
    client: httpx.Client, localstripe: str, stripe_server: Server, token: str
) -> None:
    customer = created(client.post("/customers", json={"email": "c@example.com", "payment_method": "pm_card_visa"}))
    body = {"customer_id": customer["id"], "amount": 100, "currency": "usd", "interval": "month"}
    subscription = created(client.post("/subscriptions", json=body))
    bodies = [{"quantity": n} for n in range(2, 22)]
    replies = put_concurrently(stripe_server.base_url, token, f"/subscriptions/{subscription['id']}", bodies)
    updates = updates_in_order(stripe_server.data_dir, f"subscription-{subscription['id']}", "Subscription")
    assert sorted(event.data["changes"]["quantity"] for event in updates) == list(range(2, 22))
    assert all(reply.json()["quantity"] in range(2, 22) for reply in replies)
    final = created(client.get(f"/subscriptions/{subscription['id']}"), 200)
    held = stripe_get(localstripe, f"/v1/subscriptions/{subscription['provider_reference']}").json()
    assert final["quantity"] == held["items"]["data"][0]["quantity"] == updates[-1].data["changes"]["quantity"]

    metadata = [{"metadata": {f"k{n}": "v"}} for n in range(20)]
    put_concurrently(stripe_server.base_url, token, f"/customers/{customer['id']}", metadata)
    shown = created(client.get(f"/customers/{customer['id']}"), 200)["metadata"]
    held = stripe_get(localstripe, f"/v1/customers/{customer['provider_reference']}").json()["metadata"]
    assert shown == held == {f"k{n}": "v" for n in range(20)}


def test_deleting_a_customer_cancels_its_subscription_at_stripe_first(client: httpx.Client, localstripe: str) -> None:
    customer = created(client.post("/customers", json={"email": "del@example.com", "payment_method": "pm_card_visa"}))
    subscription = created(
        client.post(
            "/subscriptions",
            json={"customer_id": customer["id"], "amount": 700, "currency": "usd", "interval": "month"},
        )
    )

    created(client.delete(f"/customers/{customer['id']}"), 200)

    assert created(client.get(f"/subscriptions/{subscription['id']}"), 200)["status"] == "canceled"
    held = stripe_get(localstripe, f"/v1/subscriptions/{subscription['provider_reference']}").json()
    assert held["status"] == "canceled"


def test_a_field_put_to_null_is_emptied_at_stripe_too(client: httpx.Client, localstripe: str) -> None:
    """Otherwise the next customer.updated webhook, which re-reads the customer from Stripe, brings it back."""
    body = {"email": "nul@example.com", "name": "Ada", "phone": "+15555550100", "description": "kept"}
    customer = created(client.post("/customers", json=body))

    updated = created(client.put(f"/customers/{customer['id']}", json={"name": None, "phone": None}), 200)

    assert (updated["name"], updated["phone"], updated["description"]) == (None, None, "kept")
    held = stripe_get(localstripe, f"/v1/customers/{customer['provider_reference']}").json()
    assert (held["name"] or None, held["phone"] or None, held["description"]) == (None, None, "kept")


def test_a_subscription_whose_card_is_refused_as_it_is_attached_is_a_card_error(
    client: httpx.Client, localstripe: str
) -> None:
    """No subscription exists at Stripe: nothing to record, to cancel, or to stop the customer's deletion."""
    customer = created(client.post("/customers", json={"email": "att@example.com", "payment_method": "pm_card_visa"}))
    refused = httpx.post(
        f"{localstripe}/v1/payment_methods",
        data={**THREE_D_SECURE_METHOD, "card[number]": "4000000000000002"},
        headers={"Authorization": f"Bearer {STRIPE_KEY}"},
    ).json()
    body = {"customer_id": customer["id"], "amount": 300, "currency": "usd", "interval": "month"}

    response = client.post("/subscriptions", json={**body, "payment_method": refused["id"]})

    assert response.status_code == 402, response.text
    assert (response.json()["error"]["type"], response.json()["error"]["code"]) == ("card_error", "card_declined")
    held = stripe_get(localstripe, "/v1/subscriptions", customer=customer["provider_reference"]).json()
    assert held["data"] == []
    assert created(client.delete(f"/customers/{customer['id']}"), 200)["deleted"] is True


def test_repeated_charge_makes_one_payment_intent(client: httpx.Client, localstripe: str) -> None:
    key = new_key()
    first = client.post("/charge", json={"amount": 500, "currency": "usd", "payment_method": "pm_card_visa"},
                        headers={"Idempotency-Key": key})  # fmt: skip
    again = client.post("/charge", json={"amount": 500, "currency": "usd", "payment_method": "pm_card_visa"},
                        headers={"Idempotency-Key": key})  # fmt: skip

    assert created(first)["id"] == created(again)["id"]
    intents = stripe_get(localstripe, "/v1/payment_intents").json()["data"]
    assert len(intents) == 1


def test_the_api_key_is_in_no_event_answer_or_log_line(client: httpx.Client, stripe_server: Server) -> None:
    charged = created(pay(client, "charge", 1000))
    declined = pay(client, "charge", 1000, "pm_card_chargeCustomerFail")
    events = client.get(f"/transactions/{charged['id']}/events")

    for text in (events.text, declined.text, client.get(f"/transactions/{charged['id']}").text):
        assert STRIPE_KEY not in text
    logs = "".join(Path(p.log_path).read_text(errors="replace") for p in stripe_server.processes)
    assert "Stripe call failed" in logs  # the decline was logged
    assert STRIPE_KEY not in logs and STRIPE_KEY.removeprefix("sk_test_") not in logs


def test_three_decimal_amounts_stripe_refuses_are_400_naming_amount(client: httpx.Client, localstripe: str) -> None:
    """Stripe takes kwd (bhd, jod, omr, tnd) amounts only in multiples of 10 of the fils, in PaymentIntents and
    Refunds: refused up front, nothing sent to Stripe; another provider takes them."""
    kwd = {"currency": "kwd", "payment_method": "pm_card_visa"}
    for route in ("charge", "authorize"):
        refused = client.post(f"/{route}", json={"amount": 1005, **kwd})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "amount"
    assert stripe_get(localstripe, "/v1/payment_intents").json()["data"] == []

    charged = created(client.post("/charge", json={"amount": 1000, **kwd}))
    refund = {"transaction_id": charged["id"], "amount": 505}
    key = {"Idempotency-Key": f"kwd-refund-{uuid.uuid4()}"}
    refused = client.post("/refund", json=refund, headers=key)
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "amount")
    # Nothing was kept under the key (as at Stripe, for a request that failed validation): it takes a good amount.
    refunded = created(client.post("/refund", json={**refund, "amount": 500}, headers=key), 200)
    assert refunded["amount_refunded"] == 500
    authorized = created(client.post("/authorize", json={"amount": 1000, **kwd}))
    capture = client.post("/capture", json={"transaction_id": authorized["id"], "amount": 995})
    assert (capture.status_code, capture.json()["error"]["param"]) == (400, "amount")

    elsewhere = created(client.post("/charge", json={"amount": 1005, **kwd, "provider": "sandbox"}))
    assert created(client.post("/refund", json={"transaction_id": elsewhere["id"], "amount": 5}), 200)["status"] == (
        "partially_refunded"
    )
