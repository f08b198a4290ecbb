"""Webhooks with a real peer: localstripe (a Stripe emulator) is the embedded server's Stripe, and is configured
(`POST /_config/webhooks/…`) to deliver its own signed events to webhook-ingest. The effects are read back
through the gateway only.

Events localstripe does not emit (refunds made in the dashboard, disputes, out-of-order subscription updates)
are built and signed by the test about objects localstripe really holds.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.blackbox.server import Server, embedded_server, new_workspace
from tests.blackbox.stripe_client import SETTLE_S, handled_eventually
from tests.blackbox.stripe_client import StripeClient as Client
from tests.support.localstripe_server import authenticate, running_localstripe, three_d_secure_method
from tests.support.stripe_webhooks import signed_stripe_event

STRIPE_KEY = "sk_test_webhooks_localstripe_0123456789"
WEBHOOK_SECRET = "whsec_localstripe_webhooks_0123456789"


@dataclass(frozen=True)
class Peer:
    server: Server
    stripe_url: str


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    data_dir = tmp_path_factory.mktemp("webhooks-localstripe")
    with running_localstripe(data_dir / "localstripe.log") as stripe_url:
        env = {
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": stripe_url,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "AUTHNET_SIGNATURE_KEY": "unused-here",
            "PAYMENTS_DEFAULT_PROVIDER": "stripe",
            "RATE_LIMIT_READ": "6000/minute",
            "RATE_LIMIT_WRITE": "600/minute",
        }
        with embedded_server(data_dir, **env) as server:
            hook = {"url": f"{server.base_url}/api/v1/webhooks/stripe", "secret": WEBHOOK_SECRET}
            httpx.post(f"{stripe_url}/_config/webhooks/payments", data=hook, timeout=10).raise_for_status()
            yield Peer(server, stripe_url)


@pytest.fixture
def client(peer: Peer) -> Iterator[Client]:
    auth = {"Authorization": f"Bearer {STRIPE_KEY}"}
    with (
        httpx.Client(base_url=peer.server.base_url, timeout=30) as http,
        httpx.Client(base_url=peer.stripe_url, headers=auth, timeout=10) as stripe,
    ):
        yield Client(http, new_workspace(), WEBHOOK_SECRET, stripe)


def charge(client: Client, payment_method: str = "pm_card_visa", **body: Any) -> dict[str, Any]:
    request = {"amount": 2000, "currency": "usd", "payment_method": payment_method, "provider": "stripe", **body}
    return client.created("charge", request)


def test_a_3ds_payment_completed_at_stripe_is_captured_through_its_webhook(client: Client) -> None:
    transaction = charge(client, three_d_secure_method(client.at_stripe))
    assert transaction["status"] == "requires_action"

    # The customer completes 3-D Secure at Stripe; Stripe tells us with payment_intent.succeeded.
    authenticate(client.at_stripe, transaction["provider_reference"])

    after = client.eventually(f"transactions/{transaction['id']}", lambda t: t["status"] != "requires_action")
    assert (after["status"], after["amount_captured"]) == ("captured", 2000)
    assert "PaymentCaptured" in client.event_types(transaction["id"])


def test_a_3ds_authorization_completed_at_stripe_becomes_authorized_and_can_be_captured(client: Client) -> None:
    request = {"amount": 2000, "currency": "usd", "payment_method": three_d_secure_method(client.at_stripe)}
    transaction = client.created("authorize", {**request, "provider": "stripe"})
    assert transaction["status"] == "requires_action"
    intent_id = transaction["provider_reference"]
    intent = authenticate(client.at_stripe, intent_id)
    assert intent["status"] == "requires_capture"

    # Stripe tells a manual-capture intent's authentication with payment_intent.amount_capturable_updated
    # (localstripe does not send it): until it was applied, the transaction stayed requires_action for good.
    client.deliver("payment_intent.amount_capturable_updated", intent)
    route = f"transactions/{transaction['id']}"
    after = client.eventually(route, lambda t: t["status"] != "requires_action")
    assert (after["status"], after["amount_authorized"], after["amount_captured"]) == ("authorized", 2000, 0)

    captured = client.call("POST", "capture", {"transaction_id": transaction["id"]})
    assert captured.status_code == 200, captured.text
    assert (captured.json()["status"], captured.json()["amount_captured"]) == ("captured", 2000)
    assert client.at_stripe.get(f"/v1/payment_intents/{intent_id}").json()["status"] == "succeeded"


def test_a_refund_that_fails_at_stripe_after_it_was_accepted_shows_failed(client: Client) -> None:
    transaction = charge(client)
    refunded = client.call("POST", "refund", {"transaction_id": transaction["id"], "amount": 500})
    assert refunded.status_code == 200, refunded.text
    assert [r["status"] for r in refunded.json()["refunds"]] == ["succeeded"]
    intent_id = transaction["provider_reference"]
    at_stripe = client.at_stripe.get("/v1/refunds", params={"payment_intent": intent_id}).json()["data"]
    assert len(at_stripe) == 1

    # The card account was closed: Stripe fails the refund and tells with refund.failed (localstripe cannot).
    failed = {**at_stripe[0], "status": "failed", "failure_reason": "expired_or_canceled_card"}
    client.deliver("refund.failed", failed)

    route = f"transactions/{transaction['id']}"
    after = client.eventually(route, lambda t: t["refunds"][0]["status"] != "succeeded")
    assert after["refunds"][0]["status"] == "failed"
    assert after["refunds"][0]["failure_reason"] == "expired_or_canceled_card"
    # Stripe no longer counts it, nor does amount_refunded; API.md's status moves go one way, so the status stays.
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 0)
    assert "RefundReversed" in client.event_types(transaction["id"])


def test_a_refund_made_in_the_dashboard_is_recorded_as_stripe_holds_it_not_as_a_stale_payload_says(
    client: Client,
) -> None:
    transaction = charge(client)
    intent_id = transaction["provider_reference"]
    # Refunded at Stripe directly (the dashboard); localstripe does not emit charge.refunded, so the test signs it,
    # with a stale total: the worker re-fetches the PaymentIntent and applies what Stripe holds now.
    refund = client.at_stripe.post("/v1/refunds", data={"payment_intent": intent_id, "amount": "700"})
    assert refund.status_code == 200, refund.text
    latest = client.at_stripe.get(f"/v1/payment_intents/{intent_id}").json()["latest_charge"]
    charge_id = latest if isinstance(latest, str) else latest["id"]
    refund_list = {"object": "list", "data": [{"id": refund.json()["id"], "amount": 200}]}
    stale = {"id": charge_id, "object": "charge", "payment_intent": intent_id, "amount_refunded": 200}
    answer = client.deliver("charge.refunded", {**stale, "refunds": refund_list})
    assert answer == {"received": True, "duplicate": False}
    after = client.eventually(f"transactions/{transaction['id']}", lambda t: t["status"] != "captured")
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 700)
    assert [refund["amount"] for refund in after["refunds"]] == [700]


def dispute_of(transaction: dict[str, Any]) -> dict[str, Any]:
    """A Stripe dispute of 2000 on the transaction's PaymentIntent (without its status)."""
    return {
        "id": f"dp_{uuid.uuid4().hex[:24]}",
        "object": "dispute",
        "payment_intent": transaction["provider_reference"],
        "amount": 2000,
        "reason": "fraudulent",
        "created": 1_800_000_000,
    }


def test_a_dispute_is_recorded_on_the_transaction(client: Client) -> None:
    transaction = charge(client)
    dispute = {**dispute_of(transaction), "status": "needs_response"}
    client.deliver("charge.dispute.created", dispute)
    after = client.eventually(f"transactions/{transaction['id']}", lambda t: t["dispute"] is not None)
    assert "PaymentDisputed" in client.event_types(transaction["id"])
    assert after["status"] == "captured"
    assert after["dispute"] == {
        "status": "needs_response",
        "reason": "fraudulent",
        "amount": 2000,
        "created_at": "2027-01-15T08:00:00.000000Z",
    }


def test_an_event_the_status_rules_forbid_is_a_recorded_discrepancy(client: Client) -> None:
    request = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "provider": "stripe"}
    transaction = client.created("authorize", request)
    assert transaction["status"] == "authorized"
    # A dispute on money never captured: not a move API.md's status rules allow.
    dispute = {
        "id": f"dp_{uuid.uuid4().hex[:24]}",
        "object": "dispute",
        "amount": 2000,
        "status": "warning_needs_response",
    }
    client.deliver("charge.dispute.created", {**dispute, "payment_intent": transaction["provider_reference"]})
    deadline = time.monotonic() + SETTLE_S
    while "ProviderEventDiscrepancy" not in client.event_types(transaction["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ProviderEventDiscrepancy" in client.event_types(transaction["id"])
    after = client.get(f"transactions/{transaction['id']}")
    assert (after["status"], after["dispute"]) == ("authorized", None)


def test_a_stale_failure_of_a_payment_stripe_holds_as_succeeded_changes_nothing(client: Client) -> None:
    transaction = charge(client)
    failed = {"id": transaction["provider_reference"], "object": "payment_intent", "status": "requires_payment_method"}
    client.deliver("payment_intent.payment_failed", failed)
    # Then an event that does change the transaction: once it shows, the stale one before it has been handled.
    dispute = {"id": f"dp_{uuid.uuid4().hex[:24]}", "object": "dispute", "amount": 2000, "status": "needs_response"}
    client.deliver("charge.dispute.created", {**dispute, "payment_intent": transaction["provider_reference"]})
    after = client.eventually(f"transactions/{transaction['id']}", lambda t: t["dispute"] is not None)
    assert after["status"] == "captured"
    assert "ProviderEventDiscrepancy" not in client.event_types(transaction["id"])  # re-fetched: it succeeded


def test_a_customer_changed_at_stripe_is_shown_through_its_webhook(client: Client) -> None:
    body = {"email": "before@example.com", "provider": "stripe", "metadata": {"tier": "gold"}}
    customer = client.created("customers", body)
    # Changed at Stripe directly: localstripe delivers its signed customer.updated to webhook-ingest.
    change = {"email": "after@example.com", "name": "Grace Hopper", "phone": "+15550100", "metadata[tier]": "platinum"}
    changed = client.at_stripe.post(f"/v1/customers/{customer['provider_reference']}", data=change)
    assert changed.status_code == 200, changed.text
    after = client.eventually(f"customers/{customer['id']}", lambda c: c["email"] != "before@example.com")
    assert (after["email"], after["name"], after["phone"]) == ("after@example.com", "Grace Hopper", "+15550100")
    assert after["metadata"] == {"tier": "platinum"}


def test_a_metadata_key_deleted_at_stripe_is_deleted_here_and_our_tag_stays_hidden(client: Client) -> None:
    body = {"email": "keys@example.com", "provider": "stripe", "metadata": {"tier": "gold", "keep": "yes"}}
    customer = client.created("customers", body)
    reference = customer["provider_reference"]
    assert "payments_operation" in client.at_stripe.get(f"/v1/customers/{reference}").json()["metadata"]
    # Deleted at Stripe directly (with the email, whose change the test waits for): localstripe's customer.updated.
    change = {"email": "k2@example.com", "metadata[keep]": ""}
    changed = client.at_stripe.post(f"/v1/customers/{reference}", data=change)
    assert changed.status_code == 200, changed.text
    after = client.eventually(f"customers/{customer['id']}", lambda c: c["email"] == "k2@example.com")
    assert after["metadata"] == {"tier": "gold"}


def test_a_late_customer_updated_does_not_undo_our_own_newer_metadata_change(client: Client, peer: Peer) -> None:
    customer = client.created("customers", {"email": "late@example.com", "provider": "stripe"})
    reference, path = customer["provider_reference"], f"customers/{customer['id']}"
    changed = client.call("PUT", path, {"metadata": {"added": "by-put"}})
    assert changed.status_code == 200, changed.text
    # A customer.updated from before that PUT, delivered after it: its payload lacks the key; Stripe holds it.
    as_before = {"id": reference, "object": "customer", "email": "late@example.com", "metadata": {}}
    client.deliver_handled(peer.server.data_dir, "customer.updated", as_before, created=int(time.time()) - 60)
    assert client.get(path)["metadata"] == {"added": "by-put"}


def subscribed(client: Client) -> dict[str, Any]:
    customer = client.created(
        "customers", {"email": "hook@example.com", "provider": "stripe", "payment_method": "pm_card_visa"}
    )
    return client.created(
        "subscriptions", {"customer_id": customer["id"], "amount": 1500, "currency": "usd", "interval": "month"}
    )


def test_a_subscription_canceled_at_stripe_is_canceled_here(client: Client) -> None:
    subscription = subscribed(client)
    assert subscription["status"] == "active"
    deleted = client.at_stripe.delete(f"/v1/subscriptions/{subscription['provider_reference']}")
    assert deleted.status_code == 200, deleted.text
    after = client.eventually(f"subscriptions/{subscription['id']}", lambda s: s["status"] == "canceled")
    assert after["status"] == "canceled"


def test_an_older_subscription_update_after_a_newer_one_leaves_the_newer_state(client: Client, peer: Peer) -> None:
    subscription = subscribed(client)
    reference = subscription["provider_reference"]
    # Changed at Stripe (the dashboard): Stripe's object and the newer event agree; the older event is stale.
    changed = client.at_stripe.post(f"/v1/subscriptions/{reference}", data={"cancel_at_period_end": "true"})
    assert changed.status_code == 200, changed.text
    newer, older = int(time.time()), int(time.time()) - 60
    stripe_object = {"id": reference, "object": "subscription", "status": "active"}
    client.deliver("customer.subscription.updated", {**stripe_object, "cancel_at_period_end": True}, created=newer)
    after = client.eventually(f"subscriptions/{subscription['id']}", lambda s: s["cancel_at_period_end"])
    assert after["cancel_at_period_end"] is True

    stale = {**stripe_object, "cancel_at_period_end": False}
    client.deliver_handled(peer.server.data_dir, "customer.subscription.updated", stale, created=older)
    final = client.get(f"subscriptions/{subscription['id']}")
    assert (final["status"], final["cancel_at_period_end"]) == ("active", True)


def test_a_subscription_update_is_applied_as_stripe_has_it_now_not_as_its_payload_says(client: Client) -> None:
    subscription = subscribed(client)
    reference = subscription["provider_reference"]
    changed = client.at_stripe.post(f"/v1/subscriptions/{reference}", data={"cancel_at_period_end": "true"})
    assert changed.status_code == 200, changed.text
    # The payload predates that change (Stripe's events can be stale): the worker re-fetches the subscription.
    stale = {"id": reference, "object": "subscription", "status": "active", "cancel_at_period_end": False}
    client.deliver("customer.subscription.updated", stale)
    after = client.eventually(f"subscriptions/{subscription['id']}", lambda s: s["cancel_at_period_end"])
    assert (after["status"], after["cancel_at_period_end"]) == ("active", True)


def test_a_late_subscription_event_does_not_undo_our_own_newer_change(client: Client, peer: Peer) -> None:
    subscription = subscribed(client)
    reference, path = subscription["provider_reference"], f"subscriptions/{subscription['id']}"
    changed = client.call("PUT", path, {"quantity": 3})
    assert changed.status_code == 200 and changed.json()["quantity"] == 3, changed.text
    # Stripe's customer.subscription.created, delivered after that change (Stripe retries a failed delivery for
    # days and sends events in no set order): its payload shows the subscription as it was made.
    as_made = {
        "id": reference,
        "object": "subscription",
        "status": "active",
        "items": {"object": "list", "data": [{"id": "si_as_made", "object": "subscription_item", "quantity": 1}]},
    }
    late = int(time.time()) - 60
    client.deliver_handled(peer.server.data_dir, "customer.subscription.created", as_made, created=late)
    assert client.get(path)["quantity"] == 3  # as Stripe holds it

    # A later change of the amount alone keeps the quantity Stripe bills.
    repriced = client.call("PUT", path, {"amount": 2000})
    assert repriced.status_code == 200 and repriced.json()["quantity"] == 3, repriced.text
    at_stripe = client.at_stripe.get(f"/v1/subscriptions/{reference}").json()
    assert at_stripe["items"]["data"][0]["quantity"] == 3


def test_a_cancellation_at_stripe_delivered_late_still_cancels_the_subscription(client: Client, peer: Peer) -> None:
    subscription = subscribed(client)
    reference = subscription["provider_reference"]
    # Canceled at Stripe an hour ago; that delivery failed and Stripe retries it later (its retries span days).
    # Meanwhile the customer paid an open invoice, told at once. A canceled subscription never comes back. (Both
    # events signed by the test: localstripe would tell its own cancellation at once.)
    canceled_at = int(time.time()) - 3600
    paid = {"id": f"in_{uuid.uuid4().hex[:24]}", "object": "invoice", "subscription": reference, "amount_due": 1500}
    body, headers = signed_stripe_event(WEBHOOK_SECRET, "invoice.paid", paid, int(time.time()))
    assert client.http.post("/api/v1/webhooks/stripe", content=body, headers=headers).status_code == 200
    assert handled_eventually(peer.server.data_dir, f"webhook-stripe-{json.loads(body)['id']}")
    stripe_object = {"id": reference, "object": "subscription", "status": "canceled", "canceled_at": canceled_at}
    client.deliver("customer.subscription.deleted", stripe_object, created=canceled_at)
    after = client.eventually(f"subscriptions/{subscription['id']}", lambda s: s["status"] == "canceled")
    assert after["status"] == "canceled"


def test_a_dispute_updated_at_stripe_shows_its_new_status_and_a_late_one_does_not_reopen_it(
    client: Client, peer: Peer
) -> None:
    transaction = charge(client)
    dispute = dispute_of(transaction)
    now = int(time.time())
    route = f"transactions/{transaction['id']}"
    client.deliver("charge.dispute.created", {**dispute, "status": "needs_response"}, created=now - 30)
    client.eventually(route, lambda t: t["dispute"] is not None)
    # The merchant submitted evidence (the dashboard): Stripe tells charge.dispute.updated, now under review.
    client.deliver("charge.dispute.updated", {**dispute, "status": "under_review"}, created=now - 20)
    updated = client.eventually(route, lambda t: t["dispute"]["status"] != "needs_response")
    assert updated["dispute"]["status"] == "under_review"

    client.deliver("charge.dispute.closed", {**dispute, "status": "won"}, created=now)
    closed = client.eventually(route, lambda t: t["dispute"]["status"] == "won")
    assert (closed["status"], closed["dispute"]["amount"]) == ("captured", 2000)
    # An update told at the same second as the closing, delivered after it: the dispute stays closed.
    body, headers = signed_stripe_event(
        WEBHOOK_SECRET, "charge.dispute.updated", {**dispute, "status": "under_review"}, now
    )
    assert client.http.post("/api/v1/webhooks/stripe", content=body, headers=headers).status_code == 200
    assert handled_eventually(peer.server.data_dir, f"webhook-stripe-{json.loads(body)['id']}")
    assert client.get(route)["dispute"]["status"] == "won"
