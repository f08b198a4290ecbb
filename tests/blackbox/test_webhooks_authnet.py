"""Authorize.net webhooks applied to payments made through the Authorize.net test server (the embedded server's
Authorize.net), read back through the gateway: a held payment approved or declined by the fraud review, an
authorization voided at Authorize.net, a repeat changing nothing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.authnet_server.merchant import refund_in_merchant_interface, void_in_merchant_interface
from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer, running_server
from tests.blackbox.server import API, Server, embedded_server, mint_token, new_workspace
from tests.support.services import stream_event_types

SIGNATURE_KEY = "C0FFEE15A5160A7E0123456789ABCDEF" * 4
SETTLE_S = 30.0


@pytest.fixture(scope="module")
def authnet() -> Iterator[AuthnetTestServer]:
    with running_server() as running:
        yield running


def server_env(authnet: AuthnetTestServer) -> dict[str, str]:
    """An embedded server's settings for Authorize.net at the test server, its webhooks verified."""
    return {
        "AUTHNET_API_LOGIN_ID": LOGIN_ID,
        "AUTHNET_TRANSACTION_KEY": TRANSACTION_KEY,
        "AUTHNET_API_URL": authnet.url,
        "AUTHNET_SIGNATURE_KEY": SIGNATURE_KEY,
        "STRIPE_WEBHOOK_SECRET": "whsec_unused_here",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, authnet: AuthnetTestServer) -> Iterator[Server]:
    with embedded_server(tmp_path_factory.mktemp("webhooks-authnet"), **server_env(authnet)) as running:
        yield running


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def nonce() -> str:
    """A unique Accept.js test token without digits: a random hex string holds a Luhn-valid run of 13 or more
    digits about once in a few hundred, which the gateway rightly refuses as card data."""
    return uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))


def pay(http: httpx.Client, workspace: str, route: str, data_value: str) -> dict[str, Any]:
    method = {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": f"{data_value}-{nonce()}"}
    body = {"amount": 4500, "currency": "usd", "payment_method": method, "provider": "authnet"}
    response = http.post(f"{API}/{route}", json=body, headers={"Authorization": f"Bearer {mint_token(workspace)}"})
    assert response.status_code in (201, 202), response.text
    paid: dict[str, Any] = response.json()
    return paid


def notify(http: httpx.Client, event_type: str, trans_id: str) -> dict[str, Any]:
    payload = {"responseCode": 1, "authAmount": 45.00, "entityName": "transaction", "id": trans_id}
    return deliver(http, f"net.authorize.payment.{event_type}", payload)


def deliver(
    http: httpx.Client,
    event_type: str,
    payload: dict[str, Any],
    at: float | None = None,
    notification_id: str | None = None,
) -> dict[str, Any]:
    body = json.dumps(
        {
            "notificationId": notification_id or str(uuid.uuid4()),
            "eventType": event_type,
            "eventDate": time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(at)),
            "webhookId": str(uuid.uuid4()),
            "payload": payload,
        }
    ).encode()
    signature = hmac.new(SIGNATURE_KEY.encode(), body, hashlib.sha512).hexdigest().upper()
    headers = {"X-ANET-Signature": f"sha512={signature}", "Content-Type": "application/json"}
    response = http.post("/api/v1/webhooks/authnet", content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def eventually(
    http: httpx.Client, workspace: str, transaction_id: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_S
    while True:
        response = http.get(
            f"{API}/transactions/{transaction_id}", headers={"Authorization": f"Bearer {mint_token(workspace)}"}
        )
        assert response.status_code == 200, response.text
        current: dict[str, Any] = response.json()
        if condition(current) or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def held_charge(http: httpx.Client, workspace: str) -> dict[str, Any]:
    """A charge Authorize.net holds for review (its outcome recorded: the payment call is over)."""
    paid = pay(http, workspace, "charge", "test-review")
    assert "PaymentHeldForReview" in eventual_event_types(http, workspace, paid["id"], "PaymentHeldForReview")
    return eventually(http, workspace, paid["id"], lambda t: True)


def test_a_held_charge_approved_by_the_fraud_review_is_captured(http: httpx.Client) -> None:
    workspace = new_workspace()
    held = held_charge(http, workspace)
    assert notify(http, "fraud.approved", held["provider_reference"])["duplicate"] is False
    after = eventually(http, workspace, held["id"], lambda t: t["status"] != "pending")
    assert (after["status"], after["amount_captured"]) == ("captured", 4500)


def test_a_held_charge_declined_by_the_fraud_review_fails(http: httpx.Client) -> None:
    workspace = new_workspace()
    held = held_charge(http, workspace)
    notify(http, "fraud.declined", held["provider_reference"])
    after = eventually(http, workspace, held["id"], lambda t: t["status"] != "pending")
    assert (after["status"], after["failure_code"]) == ("failed", "fraud_declined")


def test_an_authorization_voided_at_authorize_net_is_voided(http: httpx.Client) -> None:
    workspace = new_workspace()
    paid = pay(http, workspace, "authorize", "test-ok")
    authorized = eventually(http, workspace, paid["id"], lambda t: t["status"] != "pending")
    assert authorized["status"] == "authorized"
    notify(http, "void.created", authorized["provider_reference"])
    after = eventually(http, workspace, authorized["id"], lambda t: t["status"] != "authorized")
    assert after["status"] == "voided"
    # Afterwards a capture notification for it is a discrepancy: recorded in the audit trail, the status stays.
    notify(http, "capture.created", authorized["provider_reference"])
    assert "ProviderEventDiscrepancy" in eventual_event_types(http, workspace, authorized["id"])
    assert eventually(http, workspace, authorized["id"], lambda t: True)["status"] == "voided"


def test_a_charge_voided_at_authorize_net_before_settlement_is_refunded(http: httpx.Client) -> None:
    workspace = new_workspace()
    paid = pay(http, workspace, "charge", "test-void")
    captured = eventually(http, workspace, paid["id"], lambda t: t["status"] != "pending")
    assert captured["status"] == "captured"

    notify(http, "void.created", captured["provider_reference"])  # voided in the merchant interface

    after = eventually(http, workspace, captured["id"], lambda t: t["status"] != "captured")
    assert (after["status"], after["amount_refunded"]) == ("refunded", 4500)  # it stayed captured, a discrepancy
    assert "ProviderRefunded" in eventual_event_types(http, workspace, captured["id"], "ProviderRefunded")


def settled_charge(http: httpx.Client, authnet: AuthnetTestServer) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A charge of 4500 through this system, captured and settled at Authorize.net (so refundable there): its
    workspace, the charge as first answered, and as captured."""
    workspace = new_workspace()
    paid = pay(http, workspace, "charge", "test-ok")
    charged = eventually(http, workspace, paid["id"], lambda t: t["status"] != "pending")
    assert charged["status"] == "captured"
    authnet.settle()
    return workspace, paid, charged


async def test_a_refund_made_at_authorize_net_is_recorded_through_its_original(
    http: httpx.Client, authnet: AuthnetTestServer
) -> None:
    workspace, paid, charged = settled_charge(http, authnet)
    # Refunded at Authorize.net, not through this system (the merchant's own client stands for its interface):
    # the notification names only the refund's transId; getTransactionDetails names the original.
    refund = await refund_in_merchant_interface(authnet.url, charged["provider_reference"], 4500, 1500)
    notify(http, "refund.created", refund)
    after = await asyncio.to_thread(eventually, http, workspace, paid["id"], lambda t: t["status"] != "captured")
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 1500)
    assert [entry["amount"] for entry in after["refunds"]] == [1500]


def handled_eventually(server: Server, notification_id: str) -> bool:
    """Whether the worker that owns the notification has handled it (its `WebhookApplied`), within the settle time."""
    deadline = time.monotonic() + SETTLE_S
    while "WebhookApplied" not in stream_event_types(server.data_dir, f"webhook-authnet-{notification_id}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_notification_of_a_transaction_authorize_net_did_not_approve_moves_no_money(
    http: httpx.Client, server: Server
) -> None:
    """Authorize.net notifies a transaction whatever became of it: `responseCode` 1 approved, 2 declined, 3 error,
    4 held for review. Only an approved one took money."""
    workspace = new_workspace()
    held = held_charge(http, workspace)
    held_notice = str(uuid.uuid4())
    payload = {"responseCode": 4, "authAmount": 45.00, "entityName": "transaction", "id": held["provider_reference"]}
    deliver(http, "net.authorize.payment.authcapture.created", payload, notification_id=held_notice)
    assert handled_eventually(server, held_notice)
    assert eventually(http, workspace, held["id"], lambda t: True)["status"] == "pending"  # still under review

    authorized = eventually(http, workspace, pay(http, workspace, "authorize", "test-ok")["id"], lambda t: True)
    assert authorized["status"] == "authorized"
    declined_notice = str(uuid.uuid4())
    declined = {**payload, "responseCode": 2, "id": authorized["provider_reference"]}
    deliver(http, "net.authorize.payment.priorAuthCapture.created", declined, notification_id=declined_notice)
    assert handled_eventually(server, declined_notice)
    after = eventually(http, workspace, authorized["id"], lambda t: True)
    assert (after["status"], after["amount_captured"]) == ("authorized", 0)


def eventual_event_types(
    http: httpx.Client, workspace: str, transaction_id: str, awaited: str = "ProviderEventDiscrepancy"
) -> list[str]:
    """The transaction's audit trail once an `awaited` event is in it (or the settle time is over)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        response = http.get(
            f"{API}/transactions/{transaction_id}/events", headers={"Authorization": f"Bearer {mint_token(workspace)}"}
        )
        types = [event["type"] for event in response.json()["data"]]
        if awaited in types or time.monotonic() > deadline:
            return types
        time.sleep(0.2)


def subscription_status_eventually(http: httpx.Client, workspace: str, subscription_id: str, wanted: str) -> str:
    headers = {"Authorization": f"Bearer {mint_token(workspace, ['subscription:read'])}"}
    deadline = time.monotonic() + SETTLE_S
    while True:
        status = str(http.get(f"{API}/subscriptions/{subscription_id}", headers=headers).json()["status"])
        if status == wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_arb_subscription_events_move_the_subscription_in_their_order(http: httpx.Client, server: Server) -> None:
    workspace = new_workspace()
    token = mint_token(workspace, ["customer:create", "subscription:create"])
    method = {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": f"arb-{nonce()}"}
    customer = http.post(
        f"{API}/customers",
        json={"email": "arb@example.com", "payment_method": method, "provider": "authnet"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    plan = {"customer_id": customer["id"], "amount": 1200, "currency": "usd", "interval": "month"}
    subscription = http.post(f"{API}/subscriptions", json=plan, headers={"Authorization": f"Bearer {token}"}).json()
    arb = {"name": "plan", "amount": 12.00, "entityName": "subscription", "id": subscription["provider_reference"]}
    now = time.time()

    deliver(http, "net.authorize.customer.subscription.suspended", {**arb, "status": "suspended"}, at=now)
    assert subscription_status_eventually(http, workspace, subscription["id"], "past_due") == "past_due"
    deliver(http, "net.authorize.customer.subscription.updated", {**arb, "status": "active"}, at=now - 60)  # older
    deliver(http, "net.authorize.customer.subscription.terminated", {**arb}, at=now + 1)  # the event names it
    assert subscription_status_eventually(http, workspace, subscription["id"], "canceled") == "canceled"
    moves = stream_event_types(server.data_dir, f"subscription-{subscription['id']}")
    assert moves == ["SubscriptionCreated", "SubscriptionStatusChanged", "SubscriptionCanceled"]  # not the older one


async def test_a_refund_made_at_authorize_net_while_ours_is_open_is_recorded_when_ours_is_refused(
    http: httpx.Client, authnet: AuthnetTestServer
) -> None:
    """Our refund of 3000 of 4500 gets no answer (it stays open, to be driven again); 2000 are refunded in the
    merchant interface meanwhile and notified; our refund, driven again by the client's retry, is refused (reason 55:
    only 2500 are left). The 2000 must be recorded: they were lost when notified while ours was under way."""
    workspace, paid, charged = settled_charge(http, authnet)
    headers = {"Authorization": f"Bearer {mint_token(workspace)}", "Idempotency-Key": f"race-{uuid.uuid4().hex}"}
    body = {"transaction_id": paid["id"], "amount": 3000}

    authnet.fail_next("refuse500", only=None, times=20)
    unanswered = await asyncio.to_thread(http.post, f"{API}/refund", json=body, headers=headers)
    authnet._faults.clear()
    assert unanswered.status_code == 503, unanswered.text

    refund = await refund_in_merchant_interface(authnet.url, charged["provider_reference"], 4500, 2000)
    notify(http, "refund.created", refund)
    noted = await asyncio.to_thread(eventual_event_types, http, workspace, paid["id"], "ProviderRefundReportNoted")
    assert noted[-1] == "ProviderRefundReportNoted"

    refused = await asyncio.to_thread(http.post, f"{API}/refund", json=body, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "amount_too_large"

    after = await asyncio.to_thread(eventually, http, workspace, paid["id"], lambda t: True)
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 2000)
    assert [(r["amount"], r["status"]) for r in after["refunds"]] == [(3000, "failed"), (2000, "succeeded")]
    trail = await asyncio.to_thread(eventual_event_types, http, workspace, paid["id"], "ProviderRefunded")
    assert trail[-2:] == ["RefundFailed", "ProviderRefunded"]


async def test_our_full_refund_whose_answer_was_lost_is_not_refused_for_its_own_webhook(
    http: httpx.Client, authnet: AuthnetTestServer
) -> None:
    """Our full refund is made but its answer lost, and the reports lag; Authorize.net's webhook for it comes
    first and is noted (it may be ours). The retry's resend is refused with reason 55: by our own credit, which a
    report of that same amount may be. So no 409: 503 while unlisted, then the refund ours, once."""
    workspace, paid, charged = settled_charge(http, authnet)
    headers = {"Authorization": f"Bearer {mint_token(workspace)}", "Idempotency-Key": f"own-{uuid.uuid4().hex}"}
    body = {"transaction_id": paid["id"]}
    authnet.lag_reports(1000)
    authnet.fail_next("drop")
    lost = await asyncio.to_thread(http.post, f"{API}/refund", json=body, headers=headers)
    assert lost.status_code == 503, lost.text
    ours = refunds_of(authnet, charged["provider_reference"])
    assert len(ours) == 1
    notify(http, "refund.created", ours[0].trans_id)
    noted = await asyncio.to_thread(eventual_event_types, http, workspace, paid["id"], "ProviderRefundReportNoted")
    assert noted[-1] == "ProviderRefundReportNoted"

    while_unlisted = await asyncio.to_thread(http.post, f"{API}/refund", json=body, headers=headers)
    authnet.lag_reports(-authnet.state.lagging_lists)
    listed = await asyncio.to_thread(http.post, f"{API}/refund", json=body, headers=headers)

    assert while_unlisted.status_code == 503, while_unlisted.text  # not 409 amount_too_large
    assert listed.status_code == 200, listed.text
    assert [(r["amount"], r["status"]) for r in listed.json()["refunds"]] == [(4500, "succeeded")]
    assert len(refunds_of(authnet, charged["provider_reference"])) == 1


def refunds_of(authnet: AuthnetTestServer, trans_id: str) -> list[Any]:
    with authnet.state.lock:
        return [t for t in authnet.state.transactions.values() if t.ref_trans_id == trans_id]


def test_an_event_recorded_then_lost_to_a_crash_before_it_was_applied_is_applied_after_the_restart(
    tmp_path: Path, authnet: AuthnetTestServer
) -> None:
    """Embedded mode's broker lives in memory: the process is SIGKILLed after the event was recorded and handed
    to the worker, before the worker applied it. Authorize.net will not send it again (or, if the 200 never
    reached it, its repeat is a recorded duplicate): only the restarted system can apply it."""
    data_dir = tmp_path / "data"
    crash = f"before_provider_event_applied:{tmp_path / 'crashed-once'}"
    env = {**server_env(authnet), "PAYMENTS_FAULT_CRASH_ONCE": crash}
    workspace = new_workspace()
    with embedded_server(data_dir, **env) as first_run, httpx.Client(base_url=first_run.base_url, timeout=30) as http:
        held = held_charge(http, workspace)
        with contextlib.suppress(httpx.TransportError):  # the 200 may or may not go out before the crash
            notify(http, "fraud.approved", held["provider_reference"])
        first_run.processes[0].popen.wait(timeout=30)
        assert first_run.processes[0].popen.returncode == -9

    with embedded_server(data_dir, **env) as second_run, httpx.Client(base_url=second_run.base_url, timeout=30) as http:
        after = eventually(http, workspace, held["id"], lambda t: t["status"] != "pending")
        assert (after["status"], after["amount_captured"]) == ("captured", 4500)


def test_a_subscription_event_lost_to_a_crash_before_billing_applied_it_is_applied_after_the_restart(
    tmp_path: Path, authnet: AuthnetTestServer
) -> None:
    """The billing side of the test above: an ARB suspension recorded by webhook-ingest and handed to the billing
    worker, the process SIGKILLed before the worker applied it; the restarted system applies it."""
    data_dir = tmp_path / "data"
    crash = f"before_billing_provider_event_applied:{tmp_path / 'crashed-once'}"
    env = {**server_env(authnet), "PAYMENTS_FAULT_CRASH_ONCE": crash}
    workspace = new_workspace()
    token = mint_token(workspace, ["customer:create", "subscription:create"])
    with embedded_server(data_dir, **env) as first_run, httpx.Client(base_url=first_run.base_url, timeout=30) as http:
        method = {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": f"arb-{nonce()}"}
        body = {"email": "arb@example.com", "payment_method": method, "provider": "authnet"}
        customer = http.post(f"{API}/customers", json=body, headers={"Authorization": f"Bearer {token}"}).json()
        plan = {"customer_id": customer["id"], "amount": 1200, "currency": "usd", "interval": "month"}
        subscription = http.post(f"{API}/subscriptions", json=plan, headers={"Authorization": f"Bearer {token}"})
        assert subscription.status_code == 201, subscription.text
        made = subscription.json()
        arb = {"name": "plan", "amount": 12.00, "entityName": "subscription", "id": made["provider_reference"]}
        with contextlib.suppress(httpx.TransportError, AssertionError):  # the 200 may or may not go out first
            deliver(http, "net.authorize.customer.subscription.suspended", {**arb, "status": "suspended"})
        assert first_run.processes[0].popen.wait(timeout=30) == -9
    assert stream_event_types(data_dir, f"subscription-{made['id']}") == ["SubscriptionCreated"]

    with embedded_server(data_dir, **env) as second_run, httpx.Client(base_url=second_run.base_url, timeout=30) as http:
        assert subscription_status_eventually(http, workspace, made["id"], "past_due") == "past_due"
    assert stream_event_types(data_dir, f"subscription-{made['id']}") == [
        "SubscriptionCreated",
        "SubscriptionStatusChanged",
    ]


async def test_a_refund_voided_at_authorize_net_before_settlement_no_longer_counts(
    http: httpx.Client, authnet: AuthnetTestServer
) -> None:
    """A refund is a transaction of its own, voidable until its batch settles: its void.created names the refund's
    transId. The money stayed with the merchant: the refund fails and amount_refunded goes back, as a refund
    Stripe fails does."""
    workspace, paid, charged = settled_charge(http, authnet)
    refund = await refund_in_merchant_interface(authnet.url, charged["provider_reference"], 4500, 1500)
    notify(http, "refund.created", refund)
    refunded = await asyncio.to_thread(eventually, http, workspace, paid["id"], lambda t: t["status"] != "captured")
    assert (refunded["status"], refunded["amount_refunded"]) == ("partially_refunded", 1500)

    notify(http, "void.created", refund)  # the merchant voids that refund before it settles

    after = await asyncio.to_thread(eventually, http, workspace, paid["id"], lambda t: t["amount_refunded"] != 1500)
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 0)
    assert [(entry["amount"], entry["status"]) for entry in after["refunds"]] == [(1500, "failed")]
    trail = await asyncio.to_thread(eventual_event_types, http, workspace, paid["id"], "RefundReversed")
    assert trail[-1] == "RefundReversed"


async def test_a_refund_told_after_its_void_does_not_count(
    http: httpx.Client, server: Server, authnet: AuthnetTestServer
) -> None:
    """Refunded in the merchant interface, then that refund voided before it settled; the void's notification came
    first (about a transId not known here yet: ignored), the refund's after it. Authorize.net holds the refund
    voided: nothing was refunded."""
    workspace, paid, charged = settled_charge(http, authnet)
    refund = await refund_in_merchant_interface(authnet.url, charged["provider_reference"], 4500, 1500)
    await void_in_merchant_interface(authnet.url, refund, 1500)

    payload = {"responseCode": 1, "authAmount": 15.00, "entityName": "transaction", "id": refund}
    void_told = str(uuid.uuid4())
    deliver(http, "net.authorize.payment.void.created", payload, notification_id=void_told)
    assert await asyncio.to_thread(handled_eventually, server, void_told)
    told = str(uuid.uuid4())
    deliver(http, "net.authorize.payment.refund.created", payload, time.time() - 5, notification_id=told)
    assert await asyncio.to_thread(handled_eventually, server, told)

    after = await asyncio.to_thread(eventually, http, workspace, paid["id"], lambda t: True)
    assert (after["status"], after["amount_refunded"], after["refunds"]) == ("captured", 0, [])


def test_a_profile_changed_at_authorize_net_keeps_the_customers_metadata(
    http: httpx.Client, server: Server, authnet: AuthnetTestServer
) -> None:
    """A customer profile holds no metadata: its re-read (which replaces a Stripe customer's metadata) brings the
    email changed in the merchant interface and leaves the client's metadata, which lives only here, as it was."""
    workspace = new_workspace()
    headers = {"Authorization": f"Bearer {mint_token(workspace, ['customer:create', 'customer:read'])}"}
    body = {"email": "before@example.com", "provider": "authnet", "metadata": {"tier": "gold", "crm": "c-7"}}
    created = http.post(f"{API}/customers", json=body, headers=headers)
    assert created.status_code == 201, created.text
    customer = created.json()
    authnet.state.profiles[customer["provider_reference"]].email = "after@example.com"  # the merchant's edit

    told = str(uuid.uuid4())
    payload = {"entityName": "customerProfile", "id": customer["provider_reference"]}
    deliver(http, "net.authorize.customer.updated", payload, notification_id=told)
    assert handled_eventually(server, told)

    shown = http.get(f"{API}/customers/{customer['id']}", headers=headers).json()
    assert (shown["email"], shown["metadata"]) == ("after@example.com", {"tier": "gold", "crm": "c-7"})
