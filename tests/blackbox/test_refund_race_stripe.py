"""A refund made in Stripe's dashboard while a refund of ours is still under way, over real HTTP: the embedded server's
Stripe is the Stripe wire-format server (it refuses a refund above what remains refundable, as Stripe does, which
localstripe does not), and the dashboard's `charge.refunded` is signed by the test and posted to webhook-ingest.

Our refund of 600 of 1000 meets a 503 (it stays open, to be driven again); 500 are refunded in the dashboard and
reported; our refund, driven again by the client's retry, is refused by Stripe (only 500 are left). The 500 must be
recorded: they were lost when the report came while ours was under way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox.server import embedded_server, new_key, new_workspace
from tests.blackbox.stripe_client import StripeClient as Client
from tests.blackbox.stripe_client import WirePeer as Peer
from tests.blackbox.stripe_client import served_on_stripe_wire, stripe_wire_env
from tests.support.services import stream_event_types
from tests.support.stripe_wire_server import SERVER_ERROR, running_stripe_wire

STRIPE_KEY = "sk_test_refund_race_0123456789"
WEBHOOK_SECRET = "whsec_refund_race_0123456789"


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    data_dir = tmp_path_factory.mktemp("refund-race-stripe")
    # One 503 leaves the refund open.
    with served_on_stripe_wire(data_dir, STRIPE_KEY, WEBHOOK_SECRET, PROVIDER_RETRY_ATTEMPTS="1") as peer:
        yield peer


@pytest.fixture
def client(peer: Peer) -> Iterator[Client]:
    with httpx.Client(base_url=peer.server.base_url, timeout=30) as http:
        yield Client(http, new_workspace(), WEBHOOK_SECRET)


def test_a_dashboard_refund_reported_while_our_refund_is_open_is_recorded_when_stripe_refuses_ours(
    client: Client, peer: Peer
) -> None:
    charged = client.call("POST", "charge", {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"})
    assert charged.status_code == 201, charged.text
    transaction = charged.json()
    intent_id = transaction["provider_reference"]
    route = f"transactions/{transaction['id']}"

    key = new_key()
    peer.wire.fail_next(503, SERVER_ERROR)
    unavailable = client.call("POST", "refund", {"transaction_id": transaction["id"], "amount": 600}, key)
    assert unavailable.status_code == 503, unavailable.text

    # 500 refunded in the dashboard, and reported while our refund is still open.
    [dashboard] = dashboard_refunds(peer, intent_id, 500)
    charge_id = peer.wire.payment_intents[intent_id]["latest_charge"]
    refunds = {"object": "list", "data": [{"id": dashboard["id"], "amount": 500}]}
    reported = {"id": charge_id, "object": "charge", "payment_intent": intent_id, "amount_refunded": 500}
    assert client.deliver("charge.refunded", {**reported, "refunds": refunds})["duplicate"] is False
    noted = client.eventually(f"{route}/events", lambda e: len(e["data"]) > 4)
    assert [event["type"] for event in noted["data"]][-1] == "ProviderRefundReportNoted"

    # The client retries our refund: Stripe refuses it, only 500 being left (409 amount_too_large).
    refused = client.call("POST", "refund", {"transaction_id": transaction["id"], "amount": 600}, key)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "amount_too_large"

    after = client.get(route)
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 500)
    assert [(r["amount"], r["status"]) for r in after["refunds"]] == [(600, "failed"), (500, "succeeded")]
    trail = client.get(f"{route}/events")["data"]
    assert [event["type"] for event in trail][-2:] == ["RefundFailed", "ProviderRefunded"]
    assert trail[-1]["data"]["provider_reference"] == dashboard["id"]
    # What remains refundable here is what remains at Stripe.
    rest = client.call("POST", "refund", {"transaction_id": transaction["id"]})
    assert rest.status_code == 200, rest.text
    assert (rest.json()["status"], rest.json()["amount_refunded"]) == ("refunded", 1000)


def dashboard_refunds(peer: Peer, intent_id: str, *amounts: int) -> list[dict[str, Any]]:
    """Refunds made in Stripe's dashboard (straight at the Stripe peer, not through our API), in this order."""
    made = []
    for amount in amounts:
        dashboard = httpx.post(
            f"{peer.wire.base_url}/v1/refunds",
            data={"payment_intent": intent_id, "amount": str(amount)},
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
        )
        assert dashboard.status_code == 200, dashboard.text
        made.append(dashboard.json())
    return made


def open_refund(client: Client, peer: Peer, amount: int) -> tuple[dict[str, Any], str]:
    """A charge of 1000 and a refund of ours of `amount` that met a 503: still under way, to be driven again with
    `key`."""
    charged = client.call("POST", "charge", {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"})
    assert charged.status_code == 201, charged.text
    transaction: dict[str, Any] = charged.json()
    key = new_key()
    peer.wire.fail_next(503, SERVER_ERROR)
    unavailable = client.call("POST", "refund", {"transaction_id": transaction["id"], "amount": amount}, key)
    assert unavailable.status_code == 503, unavailable.text
    return transaction, key


def refund_failed_at_stripe(client: Client, peer: Peer, intent_id: str, refund_id: str) -> None:
    """Stripe fails the refund (a closed card account) and tells it with refund.failed."""
    if refund_id in peer.wire.refunds:
        peer.wire.fail_refund(refund_id, "expired_or_canceled_card")
    failed = {
        "id": refund_id,
        "object": "refund",
        "amount": 500,
        "payment_intent": intent_id,
        "charge": peer.wire.payment_intents[intent_id]["latest_charge"],
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
    }
    assert client.deliver("refund.failed", failed)["duplicate"] is False


def noted_reports(client: Client, route: str, count: int) -> None:
    noted = client.eventually(
        f"{route}/events", lambda e: [x["type"] for x in e["data"]].count("ProviderRefundReportNoted") >= count
    )
    assert [event["type"] for event in noted["data"]].count("ProviderRefundReportNoted") == count


def test_a_dashboard_refund_that_stripe_failed_while_our_refund_was_open_is_not_counted(
    client: Client, peer: Peer
) -> None:
    """The dashboard's charge.refunded (500) and Stripe's refund.failed for that refund both come while our refund
    of 300 is under way. Our refund then succeeds; its append records the dashboard refund from the noted total and,
    the failure naming it, reverses it: what is refunded here is what Stripe has refunded (our 300)."""
    transaction, key = open_refund(client, peer, 300)
    intent_id = transaction["provider_reference"]
    route = f"transactions/{transaction['id']}"

    [dashboard] = dashboard_refunds(peer, intent_id, 500)
    dashboard_id = dashboard["id"]
    charge_id = peer.wire.payment_intents[intent_id]["latest_charge"]
    refunds = {"object": "list", "data": [{"id": dashboard_id, "amount": 500}]}
    reported = {"id": charge_id, "object": "charge", "payment_intent": intent_id, "amount_refunded": 500}
    assert client.deliver("charge.refunded", {**reported, "refunds": refunds})["duplicate"] is False
    noted_reports(client, route, 1)
    refund_failed_at_stripe(client, peer, intent_id, dashboard_id)
    noted_reports(client, route, 2)

    retried = client.call("POST", "refund", {"transaction_id": transaction["id"], "amount": 300}, key)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["amount_refunded"]) == ("partially_refunded", 300)

    after = client.get(route)
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 300)
    assert [(r["amount"], r["status"]) for r in after["refunds"]] == [(300, "succeeded"), (200, "failed")]
    trail = client.get(f"{route}/events")["data"]
    assert [event["type"] for event in trail][-3:] == ["RefundSucceeded", "ProviderRefunded", "RefundReversed"]
    # What remains refundable here is what remains at Stripe: 700.
    rest = client.call("POST", "refund", {"transaction_id": transaction["id"]})
    assert rest.status_code == 200, rest.text
    assert (rest.json()["status"], rest.json()["amount_refunded"]) == ("refunded", 1000)
    assert rest.json()["refunds"][-1]["amount"] == 700


def test_a_refund_status_naming_no_refund_known_is_dropped_with_our_outcome_in_the_audit_trail(
    client: Client, peer: Peer
) -> None:
    transaction, key = open_refund(client, peer, 300)
    route = f"transactions/{transaction['id']}"
    refund_failed_at_stripe(client, peer, transaction["provider_reference"], "re_not_known_here")
    noted_reports(client, route, 1)

    retried = client.call("POST", "refund", {"transaction_id": transaction["id"], "amount": 300}, key)
    assert retried.status_code == 200, retried.text

    after = client.get(route)
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 300)
    trail = client.get(f"{route}/events")["data"]
    assert [event["type"] for event in trail][-2:] == ["RefundSucceeded", "ProviderRefundReportDropped"]
    dropped = trail[-1]["data"]
    assert (dropped["reference"], dropped["status"]) == ("re_not_known_here", "failed")


@pytest.mark.parametrize("listed", [True, False], ids=["listed_in_the_payload", "api_2022_11_15_lists_none"])
@pytest.mark.parametrize("failed_index", [0, 1], ids=["the_older_fails", "the_latest_fails"])
def test_each_of_two_dashboard_refunds_one_total_reports_is_reversed_by_its_own_failure(
    client: Client, peer: Peer, failed_index: int, listed: bool
) -> None:
    """Two refunds made in the dashboard (200, then 300), reported by one charge.refunded (500); no refund of ours
    under way. Stripe then fails one of them. Before, the 500 were recorded as one refund named by the latest
    listed: a failure of the other reversed nothing (500 here, 300 at Stripe), one of the latest all (0 here, 200
    at Stripe). The payload lists the charge's refunds only on API versions before 2022-11-15: the charge re-read
    from Stripe (refunds expanded) lists them in any case."""
    charged = client.call("POST", "charge", {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"})
    assert charged.status_code == 201, charged.text
    transaction = charged.json()
    intent_id = transaction["provider_reference"]
    charge_id = peer.wire.payment_intents[intent_id]["latest_charge"]
    route = f"transactions/{transaction['id']}"

    made = dashboard_refunds(peer, intent_id, 200, 300)
    refunds = {"object": "list", "data": made[::-1], "has_more": False, "url": f"/v1/charges/{charge_id}/refunds"}
    reported = {"id": charge_id, "object": "charge", "payment_intent": intent_id, "amount_refunded": 500}
    if listed:
        reported["refunds"] = refunds
    assert client.deliver("charge.refunded", reported)["duplicate"] is False
    recorded = client.eventually(route, lambda t: t["amount_refunded"] == 500)
    assert [(r["amount"], r["status"]) for r in recorded["refunds"]] == [(200, "succeeded"), (300, "succeeded")]

    failed = made[failed_index]
    peer.wire.fail_refund(failed["id"], "expired_or_canceled_card")
    failure = {**failed, "status": "failed", "failure_reason": "expired_or_canceled_card"}
    assert client.deliver("refund.failed", failure)["duplicate"] is False
    left = 500 - failed["amount"]
    after = client.eventually(route, lambda t: t["amount_refunded"] != 500)

    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", left)
    statuses = ["failed" if index == failed_index else "succeeded" for index in range(2)]
    assert [(r["amount"], r["status"]) for r in after["refunds"]] == list(zip((200, 300), statuses, strict=True))
    trail = client.get(f"{route}/events")["data"]
    assert [event["type"] for event in trail][-3:] == ["ProviderRefunded", "ProviderRefunded", "RefundReversed"]
    assert [event["data"]["provider_reference"] for event in trail[-3:-1]] == [made[0]["id"], made[1]["id"]]
    reversed_id = trail[-1]["data"]["refund_id"]
    assert reversed_id == after["refunds"][failed_index]["id"]
    # What remains refundable here is what remains at Stripe, which refuses any more.
    rest = client.call("POST", "refund", {"transaction_id": transaction["id"]})
    assert rest.status_code == 200, rest.text
    assert (rest.json()["status"], rest.json()["amount_refunded"]) == ("refunded", 1000)
    assert rest.json()["refunds"][-1]["amount"] == 1000 - left


def test_two_dashboard_refunds_reported_while_our_refund_is_open_are_each_recorded_and_reversed_by_their_failure(
    client: Client, peer: Peer
) -> None:
    """Our refund of 600 is under way (503); 200 and 300 are refunded in the dashboard and reported by one
    charge.refunded (listing none, as current API versions send it: the re-read lists both). Stripe refuses ours
    (only 500 left): both dashboard refunds are recorded, each with its id. Stripe then fails the first. Before,
    the 500 were one refund named by the latest: the failure reversed nothing (500 here, 300 at Stripe)."""
    transaction, key = open_refund(client, peer, 600)
    intent_id = transaction["provider_reference"]
    route = f"transactions/{transaction['id']}"
    charge_id = peer.wire.payment_intents[intent_id]["latest_charge"]

    made = dashboard_refunds(peer, intent_id, 200, 300)
    reported = {"id": charge_id, "object": "charge", "payment_intent": intent_id, "amount_refunded": 500}
    assert client.deliver("charge.refunded", reported)["duplicate"] is False
    noted_reports(client, route, 1)

    refused = client.call("POST", "refund", {"transaction_id": transaction["id"], "amount": 600}, key)
    assert refused.status_code == 409, refused.text
    after = client.get(route)
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 500)
    assert [(r["amount"], r["status"]) for r in after["refunds"]] == [
        (600, "failed"),
        (200, "succeeded"),
        (300, "succeeded"),
    ]
    trail = client.get(f"{route}/events")["data"]
    assert [event["type"] for event in trail][-3:] == ["RefundFailed", "ProviderRefunded", "ProviderRefunded"]
    assert [event["data"]["provider_reference"] for event in trail[-2:]] == [made[0]["id"], made[1]["id"]]

    peer.wire.fail_refund(made[0]["id"], "expired_or_canceled_card")
    failure = {**made[0], "status": "failed", "failure_reason": "expired_or_canceled_card"}
    assert client.deliver("refund.failed", failure)["duplicate"] is False
    reversed_ = client.eventually(route, lambda t: t["amount_refunded"] != 500)

    assert (reversed_["status"], reversed_["amount_refunded"]) == ("partially_refunded", 300)
    assert [(r["amount"], r["status"]) for r in reversed_["refunds"]][1:] == [(200, "failed"), (300, "succeeded")]
    assert client.get(f"{route}/events")["data"][-1]["type"] == "RefundReversed"
    # What remains refundable here is what remains at Stripe: 700.
    rest = client.call("POST", "refund", {"transaction_id": transaction["id"]})
    assert rest.status_code == 200, rest.text
    assert (rest.json()["status"], rest.json()["amount_refunded"]) == ("refunded", 1000)
    assert rest.json()["refunds"][-1]["amount"] == 700


def test_a_dashboard_refund_reported_then_lost_to_a_crash_before_it_was_applied_is_recorded_once_after_the_restart(
    tmp_path: Path,
) -> None:
    """Embedded mode's broker lives in memory: the process is SIGKILLed after webhook-ingest recorded Stripe's
    charge.refunded (a refund made in the dashboard) and handed it to the transactions worker, before the worker
    applied it (`before_provider_event_applied`). Stripe will not send it again once it got its 200: the restarted
    system applies it, re-reading the charge from Stripe, once."""
    data_dir = tmp_path / "data"
    crash = {"PAYMENTS_FAULT_CRASH_ONCE": f"before_provider_event_applied:{tmp_path / 'crashed-once'}"}
    with running_stripe_wire(STRIPE_KEY) as wire:
        env = stripe_wire_env(STRIPE_KEY, wire, WEBHOOK_SECRET)
        workspace = new_workspace()
        with embedded_server(data_dir, **env, **crash) as first_run, httpx.Client(base_url=first_run.base_url) as http:
            client = Client(http, workspace, WEBHOOK_SECRET)
            charged = client.call(
                "POST", "charge", {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"}
            )
            assert charged.status_code == 201, charged.text
            transaction = charged.json()
            peer = Peer(first_run, wire)
            [dashboard] = dashboard_refunds(peer, transaction["provider_reference"], 300)
            charge_id = wire.payment_intents[transaction["provider_reference"]]["latest_charge"]
            reported = {
                "id": charge_id,
                "object": "charge",
                "payment_intent": transaction["provider_reference"],
                "amount_refunded": 300,
                "refunds": {"object": "list", "data": [dashboard]},
            }
            with contextlib.suppress(httpx.TransportError, AssertionError):  # the 200 may or may not go out first
                client.deliver("charge.refunded", reported)
            assert first_run.processes[0].popen.wait(timeout=30) == -9
        stream = f"transaction-{transaction['id']}"
        assert "ProviderRefunded" not in stream_event_types(data_dir, stream)

        with embedded_server(data_dir, **env) as restarted, httpx.Client(base_url=restarted.base_url) as http:
            client = Client(http, workspace, WEBHOOK_SECRET)
            route = f"transactions/{transaction['id']}"
            after = client.eventually(route, lambda t: t["amount_refunded"] == 300)
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 300), after
    assert [(r["amount"], r["status"]) for r in after["refunds"]] == [(300, "succeeded")]
    assert stream_event_types(data_dir, stream).count("ProviderRefunded") == 1
