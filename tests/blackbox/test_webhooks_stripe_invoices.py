"""Stripe's invoice events about an older invoice, over real HTTP: the embedded server's Stripe is the Stripe
wire-format server, which bills a subscription's periods as Stripe does (its status follows its latest invoice,
`past_due` while that one is unpaid), and the invoice events are signed by the test and posted to webhook-ingest.

Stripe retries a charge and a delivery for days and sends events in no set order, so an event about last month's
invoice may come while this month's tells another story: the subscription must show the status Stripe holds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.blackbox.server import embedded_server, new_workspace
from tests.blackbox.stripe_client import StripeClient as Client
from tests.blackbox.stripe_client import WirePeer as Peer
from tests.blackbox.stripe_client import served_on_stripe_wire, stripe_wire_env
from tests.support.services import stream_event_types
from tests.support.stripe_wire_server import SERVER_ERROR, running_stripe_wire

STRIPE_KEY = "sk_test_invoice_events_0123456789"
WEBHOOK_SECRET = "whsec_invoice_events_0123456789"
RETRIES_AND_MORE = 5  # more than the provider retries of one re-read (PROVIDER_RETRY_ATTEMPTS, 3)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    data_dir = tmp_path_factory.mktemp("invoice-events-stripe")
    with served_on_stripe_wire(data_dir, STRIPE_KEY, WEBHOOK_SECRET) as peer:
        yield peer


@pytest.fixture
def client(peer: Peer) -> Iterator[Client]:
    with httpx.Client(base_url=peer.server.base_url, timeout=30) as http:
        yield Client(http, new_workspace(), WEBHOOK_SECRET)


def subscribed(client: Client) -> tuple[str, str]:
    """A new subscription's Stripe id and route."""
    customer = client.created(
        "customers", {"email": "invoices@example.com", "provider": "stripe", "payment_method": "pm_card_visa"}
    )
    subscription = client.created(
        "subscriptions", {"customer_id": customer["id"], "amount": 1500, "currency": "usd", "interval": "month"}
    )
    return subscription["provider_reference"], f"subscriptions/{subscription['id']}"


def test_last_months_invoice_paid_late_leaves_the_subscription_past_due_while_this_months_is_unpaid(
    client: Client, peer: Peer
) -> None:
    reference, path = subscribed(client)
    last_month = peer.wire.bill(reference, paid=False)
    client.deliver("invoice.payment_failed", last_month, created=int(time.time()) - 2)
    assert client.eventually(path, lambda s: s["status"] == "past_due")["status"] == "past_due"
    this_month = peer.wire.bill(reference, paid=False)
    client.deliver_handled(peer.server.data_dir, "invoice.payment_failed", this_month, created=int(time.time()) - 1)

    # The customer pays last month's invoice; this month's is still unpaid, so Stripe keeps the subscription
    # past_due.
    paid_late = peer.wire.pay(last_month["id"])
    assert peer.wire.subscriptions[reference]["status"] == "past_due"
    client.deliver_handled(peer.server.data_dir, "invoice.paid", paid_late)
    assert client.get(path)["status"] == "past_due"


def test_a_late_failure_of_last_months_invoice_leaves_the_subscription_active_once_this_months_is_paid(
    client: Client, peer: Peer
) -> None:
    reference, path = subscribed(client)
    last_month = peer.wire.bill(reference, paid=False)
    this_month = peer.wire.bill(reference, paid=True)
    client.deliver_handled(peer.server.data_dir, "invoice.paid", this_month, created=int(time.time()) - 1)
    assert client.get(path)["status"] == "active"

    # Stripe retries last month's charge, which fails again: this month's invoice is paid, so Stripe keeps the
    # subscription active.
    assert peer.wire.subscriptions[reference]["status"] == "active"
    client.deliver_handled(peer.server.data_dir, "invoice.payment_failed", last_month)
    assert client.get(path)["status"] == "active"


def test_a_late_invoice_event_whose_subscription_stripe_cannot_give_back_moves_nothing(tmp_path: Path) -> None:
    """Stripe is down while last month's invoice.paid comes late: the status it holds cannot be read, and the
    event's own view (paid, so active) is about an older invoice; the subscription stays as Stripe last told us
    (its customer.subscription.updated carries any real move, a snapshot, when Stripe is back)."""
    with (
        served_on_stripe_wire(tmp_path, STRIPE_KEY, WEBHOOK_SECRET) as peer,
        httpx.Client(base_url=peer.server.base_url, timeout=30) as http,
    ):
        client = Client(http, new_workspace(), WEBHOOK_SECRET)
        reference, path = subscribed(client)
        last_month = peer.wire.bill(reference, paid=False)
        this_month = peer.wire.bill(reference, paid=False)
        client.deliver("invoice.payment_failed", this_month, created=int(time.time()) - 1)
        assert client.eventually(path, lambda s: s["status"] == "past_due")["status"] == "past_due"

        paid_late = peer.wire.pay(last_month["id"])
        assert peer.wire.subscriptions[reference]["status"] == "past_due"
        for _ in range(RETRIES_AND_MORE):
            peer.wire.fail_next(500, SERVER_ERROR)  # Stripe is down: every re-read fails
        client.deliver_handled(peer.server.data_dir, "invoice.paid", paid_late)
        assert client.get(path)["status"] == "past_due"


def test_a_subscription_event_recorded_then_lost_to_a_crash_before_it_was_applied_is_applied_after_the_restart(
    tmp_path: Path,
) -> None:
    """Embedded mode's broker lives in memory: the process is SIGKILLed after webhook-ingest recorded Stripe's
    event and handed it to the billing worker, before the worker applied it. Stripe will not send it again once it
    got its 200 (and a repeat is a recorded duplicate): only the restarted system can apply it."""
    data_dir = tmp_path / "data"
    crash = {"PAYMENTS_FAULT_CRASH_ONCE": f"before_billing_provider_event_applied:{tmp_path / 'crashed-once'}"}
    with running_stripe_wire(STRIPE_KEY) as wire:
        env = stripe_wire_env(STRIPE_KEY, wire, WEBHOOK_SECRET)
        workspace = new_workspace()
        with embedded_server(data_dir, **env, **crash) as first_run, httpx.Client(base_url=first_run.base_url) as http:
            client = Client(http, workspace, WEBHOOK_SECRET)
            reference, path = subscribed(client)
            last_month = wire.bill(reference, paid=False)  # its charge failed: Stripe has it past_due
            with contextlib.suppress(httpx.TransportError, AssertionError):  # the 200 may or may not go out first
                client.deliver("invoice.payment_failed", last_month)
            assert first_run.processes[0].popen.wait(timeout=30) == -9
        assert wire.subscriptions[reference]["status"] == "past_due"
        assert stream_event_types(data_dir, "subscription-" + path.rpartition("/")[2]) == ["SubscriptionCreated"]

        with embedded_server(data_dir, **env, **crash) as restarted, httpx.Client(base_url=restarted.base_url) as http:
            client = Client(http, workspace, WEBHOOK_SECRET)
            assert client.eventually(path, lambda s: s["status"] == "past_due")["status"] == "past_due"
