"""A subscription cancel against Stripe (the wire-format server) is serialised with the subscription's other changes,
as an update is: what reaches the store between its provider call and its outcome never undoes it.

The billing worker under test runs on the test's loop; its fault point right after the provider answered the
cancel is the gate where the test makes something else happen: a second billing worker, on its own loop and
thread but the same SQLite store (as a second worker process would), applies the provider's webhook or runs a
concurrent PUT. The wire server runs on a thread of its own, so it answers while the first worker is held."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from payments_billing import serialized, subscription_commands
from payments_billing.main import build_worker
from payments_billing.settings import BillingSettings
from payments_billing.worker import BillingWorker
from payments_shared import faults
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.providers.stripe import StripeProvider

from tests.support.stripe_wire_server import WIRE_API_KEY, StripeWireServer, running_stripe_wire
from tests.unit.test_billing_provider_events import webhook
from tests.unit.test_billing_worker import handled

WORKSPACE = "ws_a"
HELD_S = 1.0  # how long the gate waits for the other worker's change before letting the cancel go on


@dataclass
class Billing:
    worker: BillingWorker
    store: SqliteEventStore
    provider: StripeProvider

    async def close(self) -> None:
        await self.provider.close()
        await self.store.close()


async def opened(data_dir: Path, wire: StripeWireServer) -> Billing:
    store = SqliteEventStore(data_dir / "events.db")
    provider = StripeProvider(WIRE_API_KEY, api_base=wire.base_url, timeout_s=10)
    settings = BillingSettings(data_dir=data_dir, payments_default_provider="stripe", stripe_api_key=WIRE_API_KEY)
    return Billing(build_worker(store, {"stripe": provider}, settings), store, provider)


async def send(worker: BillingWorker, command_type: str, payload: dict[str, Any], key: str) -> dict[str, Any]:
    return await handled(worker, command_type, payload, workspace=WORKSPACE, key=key)


@pytest.fixture
def threaded_wire() -> Iterator[StripeWireServer]:
    """The wire server on a thread of its own: it answers while the worker under test holds its loop."""
    with running_stripe_wire(WIRE_API_KEY) as server:
        yield server


@pytest.fixture
async def billing(tmp_path: Path, threaded_wire: StripeWireServer) -> AsyncIterator[Billing]:
    opened_billing = await opened(tmp_path, threaded_wire)
    yield opened_billing
    await opened_billing.close()


async def subscribed(billing: Billing) -> dict[str, Any]:
    customer = await send(
        billing.worker, "create_customer", {"email": "a@example.com", "payment_method": "pm_card_visa"}, "k-cus"
    )
    assert customer["status"] == 201, customer
    plan = {"customer_id": customer["body"]["id"], "amount": 900, "currency": "usd", "interval": "month"}
    subscription = await send(billing.worker, "create_subscription", plan, "k-sub")
    assert subscription["status"] == 201, subscription
    return dict(subscription["body"])


class OtherWorker:
    """The second worker: `run` is started on its own thread and loop at the gate, once."""

    def __init__(self, data_dir: Path, wire: StripeWireServer, run: Callable[[BillingWorker], Awaitable[Any]]):
        self._data_dir, self._wire, self._run = data_dir, wire, run
        self.thread: threading.Thread | None = None
        self.answer: Any = None

    def start_at_the_gate(self) -> None:
        """Called at the fault point (the first worker's loop is held meanwhile): start the other worker's change
        and give it `HELD_S` to finish (one that must wait for the open cancel waits in vain that long)."""
        if self.thread is not None:
            return
        self.thread = threading.Thread(target=lambda: asyncio.run(self._in_its_own_loop()), name="other-worker")
        self.thread.start()
        self.thread.join(timeout=HELD_S)

    async def _in_its_own_loop(self) -> None:
        other = await opened(self._data_dir, self._wire)
        try:
            self.answer = await self._run(other.worker)
        finally:
            await other.close()

    async def finished(self) -> Any:
        assert self.thread is not None, "the gate was never reached"
        await asyncio.to_thread(self.thread.join)
        return self.answer


async def test_a_cancel_whose_webhook_is_applied_before_its_outcome_answers_200(
    billing: Billing, threaded_wire: StripeWireServer, tmp_path: Path
) -> None:
    """Stripe's `customer.subscription.deleted` for this very cancel is applied after Stripe canceled and before
    the cancel's outcome is recorded: the cancel still succeeds (it used to answer 409 `subscription_canceled`)."""
    subscription = await subscribed(billing)
    reference = subscription["provider_reference"]

    async def deliver_the_webhook(worker: BillingWorker) -> Any:
        deleted = dict(threaded_wire.subscriptions[reference])
        assert deleted["status"] == "canceled"  # Stripe canceled it: this is its webhook about that
        return await webhook(worker, "evt_deleted", "customer.subscription.deleted", deleted, "2030-01-01T00:00:00Z")

    other = OtherWorker(tmp_path, threaded_wire, deliver_the_webhook)
    with faults.hook(subscription_commands.AFTER_CANCEL_CALL, other.start_at_the_gate):
        canceled = await send(billing.worker, "cancel_subscription", {"subscription_id": subscription["id"]}, "k-end")
    assert (await other.finished())["body"]["applied"] is True

    assert canceled["status"] == 200, canceled
    assert canceled["body"]["status"] == "canceled"
    replayed = await send(billing.worker, "cancel_subscription", {"subscription_id": subscription["id"]}, "k-end")
    assert (replayed["status"], replayed["body"]) == (200, canceled["body"])
    got = await send(billing.worker, "get_subscription", {"subscription_id": subscription["id"]}, "k-get")
    assert got["body"]["status"] == "canceled"


async def test_a_cancel_at_period_end_racing_a_put_ends_as_stripe_has_it(
    billing: Billing, threaded_wire: StripeWireServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PUT `cancel_at_period_end: false` arrives while a cancel at period end is at Stripe: they reach Stripe and
    the stream in one order, so the subscription here ends as Stripe has it (the cancel's re-run after the PUT
    replayed Stripe's stale answer under its key: `true` here, `false` at Stripe)."""
    monkeypatch.setattr(serialized, "WAIT_S", 30.0)  # the PUT waits out the held cancel, however slow the machine
    subscription = await subscribed(billing)
    keep = {"subscription_id": subscription["id"], "cancel_at_period_end": False}
    other = OtherWorker(tmp_path, threaded_wire, lambda worker: send(worker, "update_subscription", keep, "k-keep"))

    with faults.hook(subscription_commands.AFTER_CANCEL_CALL, other.start_at_the_gate):
        later = {"subscription_id": subscription["id"], "at_period_end": True}
        scheduled = await send(billing.worker, "cancel_subscription", later, "k-later")
    kept = await other.finished()

    assert (scheduled["status"], kept["status"]) == (200, 200), (scheduled, kept)
    got = await send(billing.worker, "get_subscription", {"subscription_id": subscription["id"]}, "k-get")
    at_stripe = threaded_wire.subscriptions[subscription["provider_reference"]]["cancel_at_period_end"]
    assert got["body"]["cancel_at_period_end"] is at_stripe is False  # the PUT, carried out second, stands
    assert got["body"]["status"] == "active"
