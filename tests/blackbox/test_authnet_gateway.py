"""The Authorize.net flows through the gateway: `python -m payments_embedded` with `PAYMENTS_DEFAULT_PROVIDER=authnet`
and `AUTHNET_API_URL` pointing at the Authorize.net test server (tests/authnet_server). Each flow is checked on both
sides: the API's answer and what the test server then holds."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from payments_shared.idempotency import RESPONSE_RECORDED, key_stream
from payments_shared.ids import command_id
from payments_shared.providers.authnet.messages import reference_for

from tests.authnet_server.merchant import refund_in_merchant_interface, subscribe_in_merchant_interface
from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer, running_server
from tests.blackbox.server import API, EVERY_PERMISSION, Server, embedded_server, mint_token, new_key, new_workspace
from tests.support.services import stored_events

DESCRIPTOR = "COMMON.ACCEPT.INAPP.PAYMENT"


@pytest.fixture(scope="module")
def anet() -> Iterator[AuthnetTestServer]:
    with running_server(stall_s=3.0) as server:
        yield server


@pytest.fixture(scope="module")
def authnet_gateway(tmp_path_factory: pytest.TempPathFactory, anet: AuthnetTestServer) -> Iterator[Server]:
    env = {
        "PAYMENTS_DEFAULT_PROVIDER": "authnet",
        "AUTHNET_API_LOGIN_ID": LOGIN_ID,
        "AUTHNET_TRANSACTION_KEY": TRANSACTION_KEY,
        "AUTHNET_API_URL": anet.url,
        "PROVIDER_TIMEOUT_S": "3",  # 1 s an HTTP call: a loaded machine answers a plain one within 0.2 s; stalls 3 s
    }
    data_dir = tmp_path_factory.mktemp("embedded-authnet")
    with embedded_server(data_dir, RATE_LIMIT_WRITE="600/minute", **env) as running:
        yield running


class Client:
    def __init__(self, http: httpx.Client, workspace: str) -> None:
        self.http = http
        self.workspace = workspace

    def post(self, route: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.post(f"/{route}", json=body, headers=headers)

    def pay(self, route: str, value: str, amount: int = 1099, key: str | None = None, **extra: Any) -> httpx.Response:
        method = {"data_descriptor": DESCRIPTOR, "data_value": value}
        return self.post(route, {"amount": amount, "currency": "usd", "payment_method": method, **extra}, key)


@pytest.fixture
def client(authnet_gateway: Server) -> Iterator[Client]:
    workspace = new_workspace()
    headers = {"Authorization": f"Bearer {mint_token(workspace, EVERY_PERMISSION)}"}
    with httpx.Client(base_url=f"{authnet_gateway.base_url}{API}", headers=headers, timeout=30) as http:
        yield Client(http, workspace)


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def test_charge(client: Client, anet: AuthnetTestServer) -> None:
    body = ok(client.pay("charge", "gw-charge"), 201)

    assert (body["status"], body["provider"], body["amount_captured"]) == ("captured", "authnet", 1099)
    stored = anet.state.transactions[body["provider_reference"]]
    assert (stored.kind, stored.status) == ("authCaptureTransaction", "capturedPendingSettlement")


def test_authorize_partial_capture(client: Client, anet: AuthnetTestServer) -> None:
    authorized = ok(client.pay("authorize", "gw-auth", amount=1000), 201)
    assert authorized["status"] == "authorized"

    captured = ok(client.post("capture", {"transaction_id": authorized["id"], "amount": 600}))

    assert (captured["status"], captured["amount_captured"]) == ("captured", 600)
    stored = anet.state.transactions[authorized["provider_reference"]]
    assert (stored.status, stored.settle_amount) == ("capturedPendingSettlement", Decimal(6))


def test_authorize_void(client: Client, anet: AuthnetTestServer) -> None:
    authorized = ok(client.pay("authorize", "gw-void"), 201)
    voided = ok(client.post("void", {"transaction_id": authorized["id"]}))
    assert voided["status"] == "voided"
    assert anet.state.transactions[authorized["provider_reference"]].status == "voided"


@pytest.mark.parametrize(
    ("value", "decline_code"), [("test-decline", "generic_decline"), ("test-reason-27", "incorrect_address")]
)
def test_declines_are_402_with_the_decline_code(client: Client, value: str, decline_code: str) -> None:
    response = client.pay("charge", f"{value}-gw")
    error = response.json()["error"]
    assert response.status_code == 402, response.text
    assert (error["type"], error["code"], error["decline_code"]) == ("card_error", "card_declined", decline_code)
    failed = ok(client.http.get(f"/transactions/{error['transaction_id']}"))
    assert failed["status"] == "failed"


def test_held_for_review_is_not_approved(client: Client, anet: AuthnetTestServer) -> None:
    response = client.pay("charge", "test-review-gw")
    body = response.json()
    assert response.status_code in (201, 202), response.text
    assert body["status"] == "pending"
    assert anet.state.transactions[body["provider_reference"]].status == "FDSPendingReview"


def test_full_refund_before_settlement_is_a_void(client: Client, anet: AuthnetTestServer) -> None:
    charged = ok(client.pay("charge", "gw-refund-void"), 201)
    refunded = ok(client.post("refund", {"transaction_id": charged["id"]}))
    assert (refunded["status"], refunded["amount_refunded"]) == ("refunded", 1099)
    assert anet.state.transactions[charged["provider_reference"]].status == "voided"


def test_partial_refund_before_settlement_is_refused(client: Client, anet: AuthnetTestServer) -> None:
    charged = ok(client.pay("charge", "gw-refund-partial"), 201)
    response = client.post("refund", {"transaction_id": charged["id"], "amount": 100})
    assert response.status_code == 409, response.text  # the state does not allow it yet, as API.md's 409 says
    assert (response.json()["error"]["type"], response.json()["error"]["code"]) == ("conflict", "charge_not_settled")
    assert "settle" in response.json()["error"]["message"]
    assert anet.state.transactions[charged["provider_reference"]].status == "capturedPendingSettlement"


def test_refund_after_settlement(client: Client, anet: AuthnetTestServer) -> None:
    charged = ok(client.pay("charge", "gw-refund-settled"), 201)
    anet.settle()
    refunded = ok(client.post("refund", {"transaction_id": charged["id"], "amount": 400}))
    assert (refunded["status"], refunded["amount_refunded"]) == ("partially_refunded", 400)
    refunds = [t for t in anet.state.transactions.values() if t.ref_trans_id == charged["provider_reference"]]
    assert [(t.kind, t.amount) for t in refunds] == [("refundTransaction", Decimal(4))]


async def test_a_refund_authorize_net_refuses_as_above_what_remains_is_409_and_counts_nothing(
    client: Client, anet: AuthnetTestServer
) -> None:
    charged = ok(client.pay("charge", "gw-refund-elsewhere", amount=1000), 201)
    anet.settle()
    # Refunded in the merchant interface, and its notification not applied yet: Authorize.net holds 200 refundable.
    await refund_in_merchant_interface(anet.url, charged["provider_reference"], 1000, 800)

    response = client.post("refund", {"transaction_id": charged["id"], "amount": 500})

    assert response.status_code == 409, response.text  # API.md: a refund above the refundable amount
    assert (response.json()["error"]["type"], response.json()["error"]["code"]) == ("conflict", "amount_too_large")
    after = ok(client.http.get(f"/transactions/{charged['id']}"))
    assert (after["status"], after["amount_refunded"]) == ("captured", 0)
    assert [(refund["amount"], refund["status"]) for refund in after["refunds"]] == [(500, "failed")]
    assert anet.state.transactions[charged["provider_reference"]].refunded == Decimal(8)


def test_ambiguous_timeout_leaves_one_transaction_at_authorize_net(client: Client, anet: AuthnetTestServer) -> None:
    key = new_key()
    anet.fail_next("timeout")

    body = ok(client.pay("charge", "gw-timeout", key=key), 201)

    assert body["status"] == "captured"
    invoice = reference_for(command_id(client.workspace, key))
    assert [t.trans_id for t in anet.state.payments_with_invoice(invoice)] == [body["provider_reference"]]


def test_duplicate_window_answer_resolves_to_the_original(client: Client, anet: AuthnetTestServer) -> None:
    customer = ok(client.post("customers", {"email": "dup@example.com", "payment_method": opaque("gw-dup")}), 201)
    key = new_key()
    anet.fail_next("drop")
    anet.lag_reports(1)  # the look-up misses it, so the adapter sends again and gets reason 11

    body = ok(
        client.post(
            "charge", {"amount": 700, "currency": "usd", "payment_method": customer["default_payment_method"]}, key
        ),
        201,
    )

    invoice = reference_for(command_id(client.workspace, key))
    assert [t.trans_id for t in anet.state.payments_with_invoice(invoice)] == [body["provider_reference"]]


def opaque(value: str) -> dict[str, str]:
    return {"data_descriptor": DESCRIPTOR, "data_value": value}


def test_customer_profile_create_update_delete(client: Client, anet: AuthnetTestServer) -> None:
    created = ok(client.post("customers", {"email": "ada@example.com", "payment_method": opaque("gw-cus")}), 201)
    profile_id = created["provider_reference"]
    assert (created["provider"], anet.state.profiles[profile_id].email) == ("authnet", "ada@example.com")
    assert created["default_payment_method"].startswith(f"{profile_id}/")

    charged = ok(
        client.post("charge", {"amount": 250, "currency": "usd", "payment_method": created["default_payment_method"]}),
        201,
    )
    assert (
        anet.state.transactions[charged["provider_reference"]].payment_key
        == f"profile:{created['default_payment_method']}"
    )

    ok(client.http.put(f"/customers/{created['id']}", json={"email": "ada@new.example"}))
    assert anet.state.profiles[profile_id].email == "ada@new.example"

    deleted = ok(client.http.delete(f"/customers/{created['id']}"))
    assert deleted["deleted"] is True
    assert profile_id not in anet.state.profiles


def test_subscription_is_an_arb_subscription(client: Client, anet: AuthnetTestServer) -> None:
    customer = ok(client.post("customers", {"email": "sub@example.com", "payment_method": opaque("gw-sub")}), 201)
    body = {"customer_id": customer["id"], "amount": 1500, "currency": "usd", "interval": "month", "quantity": 2}

    subscription = ok(client.post("subscriptions", body), 201)

    assert (subscription["status"], subscription["provider"]) == ("active", "authnet")
    stored = anet.state.subscriptions[subscription["provider_reference"]]
    assert (stored.amount, stored.interval, stored.status) == (Decimal(30), (1, "months"), "active")

    canceled = ok(client.post(f"subscriptions/{subscription['id']}/cancel", {}))
    assert canceled["status"] == "canceled"
    assert stored.status == "canceled"


def test_a_subscriptions_new_amount_and_quantity_reach_arb(client: Client, anet: AuthnetTestServer) -> None:
    customer = ok(client.post("customers", {"email": "put@example.com", "payment_method": opaque("gw-put")}), 201)
    body = {"customer_id": customer["id"], "amount": 1500, "currency": "usd", "interval": "month", "quantity": 2}
    subscription = ok(client.post("subscriptions", body), 201)
    stored = anet.state.subscriptions[subscription["provider_reference"]]

    cheaper = ok(client.http.put(f"/subscriptions/{subscription['id']}", json={"amount": 1250}))
    assert (cheaper["amount"], stored.amount) == (1250, Decimal("25.00"))
    more = ok(client.http.put(f"/subscriptions/{subscription['id']}", json={"quantity": 3}))
    assert (more["quantity"], stored.amount) == (3, Decimal("37.50"))


def test_a_subscription_in_another_currency_than_the_accounts_is_refused_before_arb(
    client: Client, anet: AuthnetTestServer
) -> None:
    # ARB has no currency of its own: 500 jpy × 2 on this USD account would have billed $1,000.00 a month.
    customer = ok(client.post("customers", {"email": "yen@example.com", "payment_method": opaque("gw-yen")}), 201)
    before = len(anet.state.subscriptions)
    body = {"customer_id": customer["id"], "amount": 500, "currency": "jpy", "interval": "month", "quantity": 2}

    refused = client.post("subscriptions", body)

    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "currency"
    assert len(anet.state.subscriptions) == before


def test_a_charge_in_a_currency_the_account_lacks_is_a_400_on_currency(client: Client) -> None:
    refused = client.post("charge", {"amount": 1099, "currency": "eur", "payment_method": opaque("gw-eur")})

    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "currency"


def test_deleting_a_customer_cancels_its_arb_subscription_before_the_profile(
    client: Client, anet: AuthnetTestServer
) -> None:
    # Authorize.net refuses (E00106) to delete a profile that an active subscription bills: the system cancels the
    # subscription first, as Stripe does when a customer is deleted.
    customer = ok(client.post("customers", {"email": "del@example.com", "payment_method": opaque("gw-del")}), 201)
    body = {"customer_id": customer["id"], "amount": 900, "currency": "usd", "interval": "month"}
    subscription = ok(client.post("subscriptions", body), 201)
    stored = anet.state.subscriptions[subscription["provider_reference"]]

    deleted = ok(client.http.delete(f"/customers/{customer['id']}"))

    assert deleted["deleted"] is True
    assert stored.status == "canceled"
    assert customer["provider_reference"] not in anet.state.profiles
    assert ok(client.http.get(f"/subscriptions/{subscription['id']}"))["status"] == "canceled"


async def test_an_arb_subscription_made_outside_and_ended_does_not_stop_a_customers_deletion(
    client: Client, anet: AuthnetTestServer, authnet_gateway: Server
) -> None:
    customer = ok(client.post("customers", {"email": "ended@example.com", "payment_method": opaque("gw-ended")}), 201)
    outside = await subscribe_in_merchant_interface(
        anet.url, customer["provider_reference"], customer["default_payment_method"]
    )
    anet.state.subscriptions[outside].status = "canceled"  # ended at Authorize.net; the profile still lists it

    assert ok(client.http.delete(f"/customers/{customer['id']}"))["deleted"] is True
    assert customer["provider_reference"] not in anet.state.profiles


async def test_deleting_a_customer_an_arb_subscription_made_outside_still_bills_is_409_and_the_customer_stays(
    client: Client, anet: AuthnetTestServer, authnet_gateway: Server
) -> None:
    # Authorize.net would refuse the profile's deletion (E00106); the subscription is not this system's to cancel, and
    # the customer's own subscription is not canceled either: the deletion is refused before anything is done.
    customer = ok(client.post("customers", {"email": "kept@example.com", "payment_method": opaque("gw-kept")}), 201)
    profile_id = customer["provider_reference"]
    body = {"customer_id": customer["id"], "amount": 900, "currency": "usd", "interval": "month"}
    own = ok(client.post("subscriptions", body), 201)
    await subscribe_in_merchant_interface(anet.url, profile_id, customer["default_payment_method"])
    key = new_key()

    refused = client.http.delete(f"/customers/{customer['id']}", headers={"Idempotency-Key": key})

    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("conflict", "provider_subscription_active")
    assert error["message"] == (
        "An Authorize.net subscription still bills this customer's payment profile: cancel it at Authorize.net first."
    )
    assert ok(client.http.get(f"/customers/{customer['id']}"))["id"] == customer["id"]
    assert profile_id in anet.state.profiles
    assert ok(client.http.get(f"/subscriptions/{own['id']}"))["status"] == "active"
    assert anet.state.subscriptions[own["provider_reference"]].status == "active"
    events = stored_events(authnet_gateway.data_dir)
    recorded = [e for e in events if e.stream == key_stream(command_id(client.workspace, key))][-1]
    assert (recorded.type, recorded.data["status"]) == (RESPONSE_RECORDED, 409)  # the key's answer, as any refusal
    assert "CustomerDeleted" not in [e.type for e in events if e.stream == f"customer-{customer['id']}"]
