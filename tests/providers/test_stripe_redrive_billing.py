"""Billing commands re-driven after Stripe may have forgotten their key (accepted 23 h ago or more), against the
wire-format server, which records every request.

A command whose re-drive was left unresolved (several objects may be its first attempt's: an operator decides at
Stripe) is not asked again by every recovery sweep: its 503 said Retry-After 3600, and the sweep waits that long
(read from the key's release, a fold of its stream) before it looks at Stripe again. The sweep's clock is moved past
the hour (`journal._utc_now`, as the re-drive tests move the adapter's), not slept. No Retry-After, however large or
malformed Stripe's, makes it wait longer than that hour.

A subscription's creation re-driven a day later for a customer deleted since (Stripe canceled the subscription the
first attempt made with it) records what Stripe made, even where Stripe refuses the deleted customer's list: as
made (active, or incomplete when its first invoice was never paid), then canceled. One Stripe ended since for a
customer still here (expired unpaid, or canceled in the dashboard) is recorded as made, then canceled as Stripe's report
of it would be (no cancel sent), and is the client's answer: 201, `canceled`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from payments_billing import journal, subscription_commands
from payments_billing import worker as worker_module
from payments_billing.main import build_worker
from payments_billing.settings import BillingSettings
from payments_billing.worker import BillingWorker
from payments_shared import faults, ids
from payments_shared.eventstore.port import EventStore
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.providers.port import CustomerRequest
from payments_shared.providers.stripe import StripeProvider
from payments_shared.providers.stripe_redrive import UNRESOLVED_RETRY_AFTER_S

from tests.support.stripe_wire_server import RATE_LIMITED, WIRE_API_KEY, StripeWireServer
from tests.unit.test_billing_worker import handled

A_DAY_AND_MORE = timedelta(hours=25)
FULL_METADATA = {f"field{number}": f"value{number}" for number in range(50)}  # no room for the tag: listed
EMAIL = "ada@example.com"
CUSTOMER = {"email": EMAIL, "metadata": FULL_METADATA}
MIN_AGE_S = 0.001  # the sweep's own minimum idle time: any command released a moment ago is otherwise due


@pytest.fixture
async def worker(tmp_path: Path, wire: StripeWireServer, store: SqliteEventStore) -> AsyncIterator[BillingWorker]:
    provider = StripeProvider(WIRE_API_KEY, api_base=wire.base_url, timeout_s=10)
    settings = BillingSettings(
        data_dir=tmp_path,
        payments_default_provider="stripe",
        stripe_api_key=WIRE_API_KEY,
        provider_retry_attempts=1,
        recovery_min_age_s=MIN_AGE_S,
    )
    yield build_worker(store, {"stripe": provider}, settings)
    await provider.close()


async def two_candidates_made_yesterday(wire: StripeWireServer) -> datetime:
    """Two Stripe customers, created yesterday by other commands, that show all the re-driven one sends."""
    accepted_at = datetime.now(UTC) - A_DAY_AND_MORE
    wire.advance(-A_DAY_AND_MORE.total_seconds())
    adapter = StripeProvider(WIRE_API_KEY, api_base=wire.base_url, timeout_s=10)
    for key in ("cmd-the-same", "cmd-the-same-again"):
        await adapter.create_customer(CustomerRequest(key, email=EMAIL, metadata=FULL_METADATA))
    await adapter.close()
    wire.advance(A_DAY_AND_MORE.total_seconds())
    return accepted_at


async def redriven(worker: BillingWorker, accepted_at: datetime) -> dict[str, Any]:
    issued_at = accepted_at.isoformat().replace("+00:00", "Z")
    return await handled(worker, "create_customer", CUSTOMER, key="k-unresolved", issued_at=issued_at)


async def test_an_unresolved_redrive_is_swept_again_only_once_its_retry_after_has_passed(
    wire: StripeWireServer, worker: BillingWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = await redriven(worker, await two_candidates_made_yesterday(wire))
    assert reply["status"] == 503, reply
    assert reply["headers"]["Retry-After"] == str(round(UNRESOLVED_RETRY_AFTER_S))
    asked = len(wire.requests)

    assert [await worker.sweep() for _ in range(3)] == [0, 0, 0]
    assert len(wire.requests) == asked  # Stripe not asked again: only an operator can settle it

    later = datetime.now(UTC) + timedelta(seconds=UNRESOLVED_RETRY_AFTER_S + 1)
    monkeypatch.setattr(journal, "_utc_now", lambda: later)
    assert await worker.sweep() == 1
    assert len(wire.requests) > asked  # looked up again, still unresolved
    assert len(wire.customers) == 2  # nothing created


async def test_start_up_recovery_in_embedded_mode_still_asks_an_unresolved_redrive_at_once(
    wire: StripeWireServer, worker: BillingWorker
) -> None:
    assert (await redriven(worker, await two_candidates_made_yesterday(wire)))["status"] == 503
    asked = len(wire.requests)

    assert await worker.recover(0) == 1  # embedded mode's start-up: no other worker can be running
    assert len(wire.requests) > asked


async def test_a_clients_retry_within_the_hour_of_an_unresolved_redrive_gets_its_503_without_asking_stripe(
    wire: StripeWireServer, worker: BillingWorker, store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted_at = await two_candidates_made_yesterday(wire)
    first = await redriven(worker, accepted_at)
    assert (first["status"], first["body"]["error"]["code"]) == (503, "redrive_unresolved"), first
    key_stream = f"idempotency-{ids.command_id(WORKSPACE, 'k-unresolved')}"
    recorded, asked = len(await store.read(key_stream)), len(wire.requests)

    half_an_hour_later = datetime.now(UTC) + timedelta(minutes=30)
    monkeypatch.setattr(worker_module, "_utc_now", lambda: half_an_hour_later)
    retried = await redriven(worker, accepted_at)  # the client's retry: a new delivery with the same key

    assert retried["status"] == 503 and retried["body"]["error"]["type"] == "provider_unavailable", retried
    assert retried["body"]["error"]["code"] == "redrive_unresolved"
    assert 1700 <= int(retried["headers"]["Retry-After"]) <= 1800  # what is left of the hour
    assert len(wire.requests) == asked  # Stripe not asked: only an operator can settle it
    assert len(await store.read(key_stream)) == recorded  # nothing appended: the key not taken over

    past_the_hour = datetime.now(UTC) + timedelta(seconds=UNRESOLVED_RETRY_AFTER_S + 1)
    monkeypatch.setattr(worker_module, "_utc_now", lambda: past_the_hour)
    assert (await redriven(worker, accepted_at))["status"] == 503  # looked up again, still unresolved
    assert len(wire.requests) > asked
    assert len(wire.customers) == 2  # nothing created


async def test_a_clients_retry_after_an_ordinary_503_asks_stripe_at_once(
    wire: StripeWireServer, worker: BillingWorker
) -> None:
    wire.fail_next(429, RATE_LIMITED, {"Retry-After": "2"})
    refused = await handled(worker, "create_customer", CUSTOMER, key="k-busy")
    assert (refused["status"], refused["headers"]["Retry-After"]) == (503, "2"), refused

    retried = await handled(worker, "create_customer", CUSTOMER, key="k-busy")  # within its 2 s

    assert retried["status"] == 201, retried
    assert len(wire.customers) == 1


# Stripe's Retry-After past the longest (an unresolved re-drive's hour) is cut to it; one not a number is not taken.
@pytest.mark.parametrize(("retry_after", "told"), [("1e30", "3600"), ("inf", "2"), ("nan", "2")])
async def test_a_huge_or_garbage_retry_after_from_stripe_leaves_no_command_open_for_ever(
    wire: StripeWireServer, worker: BillingWorker, monkeypatch: pytest.MonkeyPatch, retry_after: str, told: str
) -> None:
    wire.fail_next(429, RATE_LIMITED, {"Retry-After": retry_after})
    refused = await handled(worker, "create_customer", CUSTOMER, key="k-retry-after")
    assert (refused["status"], refused["headers"]["Retry-After"]) == (503, told), refused

    later = datetime.now(UTC) + timedelta(seconds=UNRESOLVED_RETRY_AFTER_S + 1)
    monkeypatch.setattr(journal, "_utc_now", lambda: later)
    assert await worker.sweep() == 1  # run again within the hour, not centuries later (nor a failed sweep)
    assert len(wire.customers) == 1


# ---- a creation re-driven a day later for a customer deleted since ----------------------------------------------

PLAN = {"amount": 1500, "currency": "usd", "interval": "month"}
WORKSPACE = "ws_a"
CREATED_AND_CANCELED = ["SubscriptionCreated", "SubscriptionCancelRequested", "SubscriptionCanceled"]


def crash() -> None:
    raise RuntimeError("the worker died right after Stripe made the subscription")


async def history(store: EventStore, subscription_id: str) -> list[str]:
    return [event.type for event in await store.read(f"subscription-{subscription_id}")]


async def made_yesterday_for_a_customer_deleted_since(
    wire: StripeWireServer, worker: BillingWorker, accepted_at: datetime, first_invoice_paid: bool = True
) -> tuple[dict[str, Any], str]:
    """The creation's first attempt made the subscription at Stripe yesterday and died before recording it; its
    customer was deleted since; Stripe has forgotten the creation's key. Stripe's subscription, our customer id."""
    wire.advance(-A_DAY_AND_MORE.total_seconds())  # yesterday
    owner = await handled(worker, "create_customer", {"email": "gone@example.com", "payment_method": "pm_card_visa"})
    assert owner["status"] == 201, owner
    with faults.hook(subscription_commands.AFTER_SUBSCRIPTION_CALL, crash), pytest.raises(RuntimeError):
        await handled(
            worker, "create_subscription", subscribing(owner["body"]["id"]), key="k-gone", issued_at=iso(accepted_at)
        )
    [made] = wire.subscriptions.values()  # nothing of it recorded here
    if not first_invoice_paid:
        made["status"] = "incomplete_expired"  # its first invoice declined, unpaid for 23 hours: it never billed
    deleted = await handled(worker, "delete_customer", {"customer_id": owner["body"]["id"]}, key="k-delete")
    assert deleted["status"] == 200, deleted
    wire.advance(A_DAY_AND_MORE.total_seconds())  # Stripe has forgotten the creation's key
    return made, owner["body"]["id"]


def subscribing(customer_id: str) -> dict[str, Any]:
    return {**PLAN, "customer_id": customer_id}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def redriven_creation(worker: BillingWorker, customer_id: str, accepted_at: datetime) -> dict[str, Any]:
    return await handled(
        worker,
        "create_subscription",
        subscribing(customer_id),
        key="k-gone",
        issued_at=iso(accepted_at),
        redelivered=True,
    )


@pytest.mark.parametrize("list_refused", [False, True])
async def test_a_creation_redriven_a_day_later_for_a_deleted_customer_records_what_stripe_made_and_canceled(
    wire: StripeWireServer, worker: BillingWorker, store: SqliteEventStore, list_refused: bool
) -> None:
    accepted_at = datetime.now(UTC) - A_DAY_AND_MORE
    made, customer_id = await made_yesterday_for_a_customer_deleted_since(wire, worker, accepted_at)
    assert made["status"] == "canceled"  # Stripe cancels a deleted customer's subscriptions
    wire.deleted_customer_lists_refused = list_refused

    redriven = await redriven_creation(worker, customer_id, accepted_at)

    assert redriven["status"] == 404 and redriven["body"]["error"]["param"] == "customer_id", redriven
    subscription_id = ids.derived_id("sub", ids.command_id(WORKSPACE, "k-gone"))
    # What Stripe made is on record, and its cancellation, as a re-drive within the day records them.
    assert await history(store, subscription_id) == CREATED_AND_CANCELED
    got = await handled(worker, "get_subscription", {"subscription_id": subscription_id})
    assert (got["body"]["provider_reference"], got["body"]["status"]) == (made["id"], "canceled"), got
    assert list(wire.subscriptions) == [made["id"]]  # nothing made twice


async def test_one_whose_first_invoice_was_never_paid_is_recorded_as_it_started_incomplete_not_as_billed(
    wire: StripeWireServer, worker: BillingWorker, store: SqliteEventStore
) -> None:
    accepted_at = datetime.now(UTC) - A_DAY_AND_MORE
    made, customer_id = await made_yesterday_for_a_customer_deleted_since(
        wire, worker, accepted_at, first_invoice_paid=False
    )
    assert made["status"] == "incomplete_expired"  # ended: the customer's deletion leaves it so

    redriven = await redriven_creation(worker, customer_id, accepted_at)

    assert redriven["status"] == 404 and redriven["body"]["error"]["param"] == "customer_id", redriven
    subscription_id = ids.derived_id("sub", ids.command_id(WORKSPACE, "k-gone"))
    events = await store.read(f"subscription-{subscription_id}")
    assert [event.type for event in events] == CREATED_AND_CANCELED
    assert events[0].data["status"] == "incomplete"  # not "active": the subscription never billed anyone
    assert list(wire.subscriptions) == [made["id"]]


# ---- a creation re-driven a day later, its subscription ended at Stripe since, its customer still here ----------

CREATED_THEN_ENDED = ["SubscriptionCreated", "SubscriptionCanceled"]  # as Stripe's report of the end is recorded


async def made_yesterday_and_ended_since(
    wire: StripeWireServer, worker: BillingWorker, accepted_at: datetime, stripe_status: str
) -> tuple[dict[str, Any], str]:
    """The creation's first attempt made the subscription at Stripe yesterday and died before recording it; Stripe
    has ended it since (`stripe_status`) and forgotten the creation's key; its customer is still here."""
    wire.advance(-A_DAY_AND_MORE.total_seconds())
    owner = await handled(worker, "create_customer", {"email": "kept@example.com", "payment_method": "pm_card_visa"})
    assert owner["status"] == 201, owner
    with faults.hook(subscription_commands.AFTER_SUBSCRIPTION_CALL, crash), pytest.raises(RuntimeError):
        await handled(
            worker, "create_subscription", subscribing(owner["body"]["id"]), key="k-gone", issued_at=iso(accepted_at)
        )
    [made] = wire.subscriptions.values()
    made.update(status=stripe_status, canceled_at=int(wire.now()))
    wire.advance(A_DAY_AND_MORE.total_seconds())
    return made, owner["body"]["id"]


# incomplete_expired: its first invoice was never paid, Stripe expired it after 23 h; canceled: in the dashboard.
@pytest.mark.parametrize(("stripe_status", "as_made"), [("incomplete_expired", "incomplete"), ("canceled", "active")])
async def test_one_stripe_ended_since_for_a_customer_still_here_is_recorded_as_made_then_canceled_and_answered(
    wire: StripeWireServer, worker: BillingWorker, store: SqliteEventStore, stripe_status: str, as_made: str
) -> None:
    accepted_at = datetime.now(UTC) - A_DAY_AND_MORE
    made, customer_id = await made_yesterday_and_ended_since(wire, worker, accepted_at, stripe_status)
    asked = len(wire.requests)

    redriven = await redriven_creation(worker, customer_id, accepted_at)

    assert redriven["status"] == 201, redriven  # it exists at Stripe: the client gets it, as Stripe shows it
    assert (redriven["body"]["provider_reference"], redriven["body"]["status"]) == (made["id"], "canceled")
    subscription_id = ids.derived_id("sub", ids.command_id(WORKSPACE, "k-gone"))
    events = await store.read(f"subscription-{subscription_id}")
    assert [event.type for event in events] == CREATED_THEN_ENDED
    assert events[0].data["status"] == as_made
    assert not [call for call in wire.requests[asked:] if call.method == "DELETE"]  # already ended: not canceled
    assert list(wire.subscriptions) == [made["id"]]  # nothing made twice
    got = await handled(worker, "get_subscription", {"subscription_id": subscription_id})
    assert got["body"] == redriven["body"], got

    again = await handled(worker, "create_subscription", subscribing(customer_id), key="k-gone")
    assert (again["status"], again["body"]) == (201, redriven["body"])
    assert again["headers"].get("Idempotent-Replayed") == "true"
    assert list(wire.subscriptions) == [made["id"]]
