"""The billing worker end to end below the broker: commands in, replies out, events in a real (in-memory) store,
the real sandbox ledger and the shared idempotency guard."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from payments_billing import customer_commands, serialized, subscription_commands
from payments_billing.main import build_worker, start_billing
from payments_billing.settings import BillingSettings
from payments_billing.worker import BEFORE_RECORD, BillingWorker
from payments_ops.checks import check_customer
from payments_shared import faults, ids
from payments_shared.broker.memory import InMemoryBroker
from payments_shared.broker.port import Message
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.eventstore.port import NewEvent
from payments_shared.messages import Command
from payments_shared.providers.port import CustomerRequest, Outcome, PaymentMethod, ProviderResult, SubscriptionRequest
from payments_shared.providers.sandbox import SandboxProvider
from payments_shared.providers.sandbox_billing import SandboxBilling


async def handled(
    worker: BillingWorker,
    command_type: str,
    payload: dict[str, Any],
    *,
    workspace: str = "ws_a",
    key: str | None = None,
    redelivered: bool = False,
    message_id: str | None = None,
    issued_at: str | None = None,
) -> dict[str, Any]:
    """The worker's reply to the command, delivered as the broker delivers it (a creation's id derived from it)."""
    command_id = ids.command_id(workspace, key)
    if command_type == "create_customer":
        payload = {"customer_id": ids.derived_id("cus", command_id), **payload}
    if command_type == "create_subscription":
        payload = {"subscription_id": ids.derived_id("sub", command_id), **payload}
    command = Command(
        type=command_type,
        workspace=workspace,
        actor="user_1",
        command_id=command_id,
        idempotency_key=key,
        fingerprint=ids.fingerprint(command_type, payload),
        payload=payload,
        **({"issued_at": issued_at} if issued_at else {}),
    )
    message = Message(body=command.model_dump(), redelivered=redelivered)
    if message_id:
        message = Message(body=command.model_dump(), message_id=message_id, redelivered=redelivered)
    return dict(await worker.handle(message))


@dataclass
class Billing:
    worker: BillingWorker
    store: InMemoryEventStore
    sandbox: SandboxProvider

    async def send(self, command_type: str, payload: dict[str, Any], **options: Any) -> dict[str, Any]:
        return await handled(self.worker, command_type, payload, **options)


@pytest.fixture
async def billing(tmp_path: Path) -> AsyncIterator[Billing]:
    store = InMemoryEventStore()
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    worker = build_worker(store, {"sandbox": sandbox}, BillingSettings(data_dir=tmp_path))
    yield Billing(worker, store, sandbox)
    await sandbox.close()


async def customer(billing: Billing, **payload: Any) -> dict[str, Any]:
    reply = await billing.send(
        "create_customer", {"email": "a@example.com", "payment_method": "pm_card_visa", **payload}
    )
    assert reply["status"] == 201, reply
    return dict(reply["body"])


async def test_customer_lifecycle_with_history_kept(billing: Billing) -> None:
    created = await customer(billing, metadata={"a": "1"})
    assert created["provider"] == "sandbox" and created["provider_reference"].startswith("cus_sbx_")
    assert created["default_payment_method"] == "pm_card_visa"
    got = await billing.send("get_customer", {"customer_id": created["id"]})
    assert got == {"status": 200, "body": created, "headers": {}}
    updated = await billing.send(
        "update_customer", {"customer_id": created["id"], "name": "Ada", "metadata": {"b": "2"}}
    )
    assert updated["status"] == 200
    assert (updated["body"]["name"], updated["body"]["metadata"]) == ("Ada", {"a": "1", "b": "2"})
    deleted = await billing.send("delete_customer", {"customer_id": created["id"]})
    assert deleted["body"] == {"id": created["id"], "object": "customer", "deleted": True}
    for command_type in ("get_customer", "update_customer", "delete_customer"):
        reply = await billing.send(command_type, {"customer_id": created["id"]})
        assert reply["status"] == 404, command_type
    history = await billing.store.read(f"customer-{created['id']}")
    assert [event.type for event in history] == [
        "CustomerCreated",
        "CustomerUpdateRequested",
        "CustomerUpdated",
        "CustomerDeleted",
    ]
    assert history[0].metadata["actor"] == "user_1" and history[0].metadata["workspace"] == "ws_a"


async def test_another_workspace_gets_not_found(billing: Billing) -> None:
    created = await customer(billing)
    for command_type in ("get_customer", "update_customer", "delete_customer"):
        reply = await billing.send(command_type, {"customer_id": created["id"], "name": "x"}, workspace="ws_b")
        assert reply["status"] == 404, command_type
    reply = await billing.send(
        "create_subscription",
        {"customer_id": created["id"], "amount": 500, "currency": "usd", "interval": "month"},
        workspace="ws_b",
    )
    assert reply["status"] == 404 and reply["body"]["error"]["param"] == "customer_id"


async def test_an_idempotent_repeat_replays_and_a_different_body_is_422(billing: Billing) -> None:
    first = await billing.send("create_customer", {"email": "a@example.com"}, key="k1")
    again = await billing.send("create_customer", {"email": "a@example.com"}, key="k1")
    assert again["status"] == 201 and again["body"] == first["body"]
    assert again["headers"]["Idempotent-Replayed"] == "true"
    changed = await billing.send("create_customer", {"email": "b@example.com"}, key="k1")
    assert changed["status"] == 422
    assert billing.sandbox.ledger.count() == 1


async def test_a_redelivery_after_a_crash_before_the_reply_applies_nothing_twice(billing: Billing) -> None:
    created = await customer(billing)
    payload = {"customer_id": created["id"], "name": "Ada"}

    def crash() -> None:
        raise RuntimeError("crash between the append and the recorded reply")

    with faults.hook(BEFORE_RECORD, crash), pytest.raises(RuntimeError):
        await billing.send("update_customer", payload, key="k-upd")
    again = await billing.send("update_customer", payload, key="k-upd", redelivered=True)
    assert again["status"] == 200 and again["body"]["name"] == "Ada"
    history = await billing.store.read(f"customer-{created['id']}")
    assert [event.type for event in history] == ["CustomerCreated", "CustomerUpdateRequested", "CustomerUpdated"]
    replay = await billing.send("update_customer", payload, key="k-upd")
    assert replay["body"] == again["body"] and replay["headers"]["Idempotent-Replayed"] == "true"


async def test_a_create_redelivered_after_a_crash_makes_one_customer_and_one_provider_call(billing: Billing) -> None:
    def crash() -> None:
        raise RuntimeError("crash")

    payload = {"email": "a@example.com", "payment_method": "pm_card_visa"}
    with faults.hook(BEFORE_RECORD, crash), pytest.raises(RuntimeError):
        await billing.send("create_customer", payload, key="k-new")
    again = await billing.send("create_customer", payload, key="k-new", redelivered=True)
    assert again["status"] == 201
    history = await billing.store.read(f"customer-{again['body']['id']}")
    assert [event.type for event in history] == ["CustomerCreated"]
    assert billing.sandbox.ledger.count() == 1


def plan(**extra: Any) -> dict[str, Any]:
    return {"amount": 1000, "currency": "usd", "interval": "month", "interval_count": 1, **extra}


async def test_subscription_lifecycle(billing: Billing) -> None:
    owner = await customer(billing)
    created = await billing.send("create_subscription", plan(customer_id=owner["id"], quantity=2))
    assert created["status"] == 201
    body = created["body"]
    assert (body["status"], body["quantity"], body["provider"]) == ("active", 2, "sandbox")
    assert body["current_period_start"] < body["current_period_end"]
    sub_id = body["id"]
    updated = await billing.send("update_subscription", {"subscription_id": sub_id, "quantity": 3, "amount": 1200})
    assert (updated["body"]["quantity"], updated["body"]["amount"]) == (3, 1200)
    later = await billing.send("cancel_subscription", {"subscription_id": sub_id, "at_period_end": True})
    assert (later["body"]["status"], later["body"]["cancel_at_period_end"]) == ("active", True)
    now = await billing.send("cancel_subscription", {"subscription_id": sub_id})
    assert now["body"]["status"] == "canceled" and now["body"]["canceled_at"] is not None
    for command_type, payload in (
        ("cancel_subscription", {"subscription_id": sub_id}),
        ("update_subscription", {"subscription_id": sub_id, "quantity": 1}),
    ):
        reply = await billing.send(command_type, payload)
        assert reply["status"] == 409, command_type
    got = await billing.send("get_subscription", {"subscription_id": sub_id})
    assert got["body"]["status"] == "canceled"


async def test_subscription_outcomes(billing: Billing) -> None:
    declining = await customer(billing, payment_method="pm_card_chargeDeclined")
    incomplete = await billing.send("create_subscription", plan(customer_id=declining["id"]))
    assert (incomplete["status"], incomplete["body"]["status"]) == (201, "incomplete")
    trial = await billing.send("create_subscription", plan(customer_id=declining["id"], trial_days=14))
    assert trial["body"]["status"] == "trialing" and trial["body"]["trial_end"] == trial["body"]["current_period_end"]
    bare = await customer(billing, payment_method=None)
    refused = await billing.send("create_subscription", plan(customer_id=bare["id"]))
    assert (refused["status"], refused["body"]["error"]["param"]) == (400, "payment_method")
    given = await billing.send("create_subscription", plan(customer_id=bare["id"], payment_method="pm_card_amex"))
    assert given["body"]["status"] == "active"
    priced = await billing.send(
        "create_subscription",
        {"customer_id": bare["id"], "price": "price_sandbox_yearly", "payment_method": "pm_card_visa"},
    )
    assert (priced["body"]["amount"], priced["body"]["interval"], priced["body"]["price"]) == (
        10000,
        "year",
        "price_sandbox_yearly",
    )
    error = await billing.send(
        "create_subscription", plan(customer_id=bare["id"], payment_method="pm_card_processingError")
    )
    assert error["status"] == 502


async def test_unknown_objects_and_commands(billing: Billing) -> None:
    assert (await billing.send("get_subscription", {"subscription_id": "sub_nope"}))["status"] == 404
    assert (await billing.send("cancel_subscription", {"subscription_id": "sub_nope"}))["status"] == 404
    missing = await billing.send("create_subscription", plan(customer_id="cus_nope", payment_method="pm_card_visa"))
    assert missing["status"] == 404 and missing["body"]["error"]["param"] == "customer_id"
    assert (await billing.send("explode", {}))["status"] == 400
    unknown_provider = await billing.send("create_customer", {"email": "a@example.com", "provider": "stripe"})
    assert unknown_provider["status"] == 400 and unknown_provider["body"]["error"]["param"] == "provider"


async def test_a_change_accepted_before_a_crash_is_finished_at_start_up(billing: Billing, tmp_path: Path) -> None:
    def crash() -> None:
        raise RuntimeError("crash")

    payload = {"email": "a@example.com", "payment_method": "pm_card_visa"}
    with faults.hook(BEFORE_RECORD, crash), pytest.raises(RuntimeError):
        await billing.send("create_customer", payload, key="k-lost")
    restarted = build_worker(billing.store, {"sandbox": billing.sandbox}, BillingSettings(data_dir=tmp_path))
    assert await restarted.recover(0) == 1
    assert await restarted.recover(0) == 0  # nothing left open
    billing.worker = restarted
    replay = await billing.send("create_customer", payload, key="k-lost")
    assert replay["status"] == 201 and replay["headers"]["Idempotent-Replayed"] == "true"
    history = await billing.store.read(f"customer-{replay['body']['id']}")
    assert [event.type for event in history] == ["CustomerCreated"]
    assert billing.sandbox.ledger.count() == 1


async def test_the_journal_never_keeps_a_nonce(billing: Billing) -> None:
    opaque = {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": "nonce-secret-value"}
    await billing.send("create_customer", {"email": "a@example.com", "payment_method": opaque})
    kept = [event async for event in billing.store.read_all() if event.type == "BillingCommandAccepted"]
    assert kept and "nonce-secret-value" not in str([event.data for event in kept])


async def test_concurrent_changes_are_each_applied_on_the_latest_state(billing: Billing) -> None:
    owner = await customer(billing)
    created = await billing.send("create_subscription", plan(customer_id=owner["id"]))
    sub_id = created["body"]["id"]
    changes = [{"subscription_id": sub_id, "metadata": {f"k{index}": "v"}} for index in range(6)]
    replies = await asyncio.gather(*(billing.send("update_subscription", change) for change in changes))
    assert all(reply["status"] == 200 for reply in replies)
    final = await billing.send("get_subscription", {"subscription_id": sub_id})
    assert final["body"]["metadata"] == {f"k{index}": "v" for index in range(6)}
    history = await billing.store.read(f"subscription-{sub_id}")
    assert [event.type for event in history].count("SubscriptionUpdated") == 6


async def subscription_of(billing: Billing, customer_id: str, key: str | None = None) -> dict[str, Any]:
    payload = {"customer_id": customer_id, "amount": 500, "currency": "usd", "interval": "month"}
    reply = await billing.send("create_subscription", payload, key=key)
    assert reply["status"] == 201, reply
    return dict(reply["body"])


async def subscription_events(billing: Billing, subscription_id: str) -> list[str]:
    return [event.type for event in await billing.store.read(f"subscription-{subscription_id}")]


async def test_deleting_a_customer_cancels_its_subscriptions_first_as_stripe_does(billing: Billing) -> None:
    created = await customer(billing)
    first, second, ended = [await subscription_of(billing, created["id"]) for _ in range(3)]
    assert (await billing.send("cancel_subscription", {"subscription_id": ended["id"]}))["status"] == 200
    ended_before = (await billing.send("get_subscription", {"subscription_id": ended["id"]}))["body"]
    someone_else = await subscription_of(billing, (await customer(billing))["id"])
    calls_before = billing.sandbox.ledger.count()

    deleted = await billing.send("delete_customer", {"customer_id": created["id"]})

    assert deleted["status"] == 200, deleted
    for subscription in (first, second):
        body = (await billing.send("get_subscription", {"subscription_id": subscription["id"]}))["body"]
        assert body["status"] == "canceled" and body["canceled_at"] is not None
    assert (await billing.send("get_subscription", {"subscription_id": ended["id"]}))["body"] == ended_before
    assert (await billing.send("get_subscription", {"subscription_id": someone_else["id"]}))["body"]["status"] == (
        "active"
    )
    assert billing.sandbox.ledger.count() == calls_before + 3  # two cancels, then the deletion


@pytest.mark.parametrize(
    "point", [subscription_commands.AFTER_CANCEL_CALL, customer_commands.AFTER_SUBSCRIPTIONS_CANCELED]
)
async def test_a_delete_that_crashes_midway_cancels_each_subscription_once_when_redelivered(
    billing: Billing, point: str
) -> None:
    created = await customer(billing)
    subscriptions = [await subscription_of(billing, created["id"]) for _ in range(2)]
    calls_before = billing.sandbox.ledger.count()

    def crash() -> None:
        raise RuntimeError(f"crash at {point}")

    with faults.hook(point, crash), pytest.raises(RuntimeError):
        await billing.send("delete_customer", {"customer_id": created["id"]}, key="k-del")
    again = await billing.send("delete_customer", {"customer_id": created["id"]}, key="k-del", redelivered=True)

    assert again["status"] == 200 and again["body"]["deleted"] is True
    for subscription in subscriptions:
        assert (await subscription_events(billing, subscription["id"])).count("SubscriptionCanceled") == 1
    assert billing.sandbox.ledger.count() == calls_before + 3  # nothing sent to the provider twice


def crash() -> None:
    raise RuntimeError("crash")


@pytest.mark.parametrize(
    "point", [subscription_commands.AFTER_SUBSCRIPTION_CALL, subscription_commands.AFTER_SUBSCRIPTION_RECORDED]
)
async def test_a_creation_that_finds_its_customer_deleted_undoes_the_subscription(billing: Billing, point: str) -> None:
    # The creation dies after the provider made the subscription (before or after recording it), before listing it
    # on the customer; the customer is deleted meanwhile (its deletion cannot see the subscription); the
    # redelivered creation finds the customer gone, records what the provider made (its replay under the same key),
    # cancels it at the provider and answers the customer's 404.
    created = await customer(billing)
    payload = {"customer_id": created["id"], "amount": 500, "currency": "usd", "interval": "month"}
    with faults.hook(point, crash), pytest.raises(RuntimeError):
        await billing.send("create_subscription", payload, key="k-sub")
    assert (await billing.send("delete_customer", {"customer_id": created["id"]}))["status"] == 200
    calls_before = billing.sandbox.ledger.count()

    again = await billing.send("create_subscription", payload, key="k-sub", redelivered=True)

    assert again["status"] == 404 and again["body"]["error"]["param"] == "customer_id"
    subscription_id = ids.derived_id("sub", ids.command_id("ws_a", "k-sub"))
    assert await subscription_events(billing, subscription_id) == [
        "SubscriptionCreated",
        "SubscriptionCancelRequested",
        "SubscriptionCanceled",
    ]
    assert billing.sandbox.ledger.count() == calls_before + 1  # the cancel (the creation's replay is no new call)
    made = (await billing.send("get_subscription", {"subscription_id": subscription_id}))["body"]
    assert made["status"] == "canceled" and billing.sandbox.ledger.subscription_canceled(made["provider_reference"])
    assert (await billing.send("create_subscription", payload, key="k-sub"))["status"] == 404  # replayed


async def test_a_creation_the_provider_refuses_as_its_customer_was_deleted_meanwhile_is_the_deletions_404(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The creation read its customer alive; the deletion won the race at the provider, which refuses the creation
    (Stripe: no such customer). The answer is the deletion's 404 on customer_id, not a provider error."""
    created = await customer(billing)
    payload = {"customer_id": created["id"], "amount": 500, "currency": "usd", "interval": "month"}

    async def refused_after_the_deletion(_: SandboxBilling, request: SubscriptionRequest) -> ProviderResult:
        assert (await billing.send("delete_customer", {"customer_id": created["id"]}))["status"] == 200
        return ProviderResult(Outcome.PERMANENT, message="No such customer: 'cus_…'")

    monkeypatch.setattr(SandboxBilling, "create_subscription", refused_after_the_deletion)
    answer = await billing.send("create_subscription", payload, key="k-sub-race")

    assert answer["status"] == 404 and answer["body"]["error"]["param"] == "customer_id", answer
    subscription_id = ids.derived_id("sub", ids.command_id("ws_a", "k-sub-race"))
    assert (await billing.send("get_subscription", {"subscription_id": subscription_id}))["status"] == 404


async def test_a_subscription_listed_after_a_deletion_began_is_canceled_by_it(billing: Billing) -> None:
    created = await customer(billing)
    with faults.hook(customer_commands.AFTER_SUBSCRIPTIONS_CANCELED, crash), pytest.raises(RuntimeError):
        await billing.send("delete_customer", {"customer_id": created["id"]}, key="k-del")
    late = await subscription_of(billing, created["id"])  # the customer is not deleted yet

    again = await billing.send("delete_customer", {"customer_id": created["id"]}, key="k-del", redelivered=True)

    assert again["status"] == 200
    assert (await billing.send("get_subscription", {"subscription_id": late["id"]}))["body"]["status"] == "canceled"


class AnswersLost:
    """The sandbox's billing, but the answers to the first `lost` subscription creations are lost (a timeout after
    the provider acted); it notes when each attempt says its command was accepted."""

    name = "sandbox"

    def __init__(self, inner: SandboxBilling, lost: int) -> None:
        self._inner, self._lost = inner, lost
        self.accepted: list[datetime | None] = []
        self.payment_methods: list[PaymentMethod | None] = []
        self.held: asyncio.Event | None = None  # when set, a call waits for it (a slow provider)
        self.called = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        self.payment_methods.append(request.payment_method)
        return await self._attempt(request.accepted_at, partial(self._inner.create_subscription, request))

    async def _attempt(
        self, accepted_at: datetime | None, create: Callable[[], Awaitable[ProviderResult]]
    ) -> ProviderResult:
        self.accepted.append(accepted_at)
        self.called.set()
        if self.held is not None:
            await self.held.wait()
        result = await create()
        if self._lost > 0:
            self._lost -= 1
            return ProviderResult(Outcome.RETRYABLE, message="read timeout", retry_after=0.01)
        return result


async def test_every_attempt_of_a_subscription_tells_the_provider_when_it_was_first_accepted(tmp_path: Path) -> None:
    """A provider that starts the subscription on the day it was accepted (ARB) needs the same day on every
    attempt: the client's retry after a 503 is a new command issued later, the journal's re-run is the first."""
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    provider = AnswersLost(SandboxBilling(sandbox.ledger), lost=2)
    settings = BillingSettings(data_dir=tmp_path, provider_retry_attempts=1)
    billing = Billing(
        build_worker(InMemoryEventStore(), {"sandbox": provider}, settings), InMemoryEventStore(), sandbox
    )
    owner = await customer(billing)
    first_day, next_day = "2030-01-01T23:59:59.000000Z", "2030-01-02T00:00:05.000000Z"
    subscribe = plan(customer_id=owner["id"])

    assert (await billing.send("create_subscription", subscribe, key="s-late", issued_at=first_day))["status"] == 503
    assert (await billing.send("create_subscription", subscribe, key="s-late", issued_at=next_day))["status"] == 503
    assert await billing.worker.recover(0) == 1
    await sandbox.close()

    assert provider.accepted == [datetime(2030, 1, 1, 23, 59, 59, tzinfo=UTC)] * 3


async def test_a_creation_redelivered_after_the_customers_default_changed_asks_the_provider_the_same(
    tmp_path: Path,
) -> None:
    """The worker dies after the provider made the subscription; the customer's default payment method changes; the
    broker redelivers the creation's own message: the provider is asked for the same subscription under the same key
    (another payment method is a second ARB subscription, or Stripe's idempotency error); a new creation gets the
    new default."""
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    provider = AnswersLost(SandboxBilling(sandbox.ledger), lost=0)
    store = InMemoryEventStore()
    billing = Billing(build_worker(store, {"sandbox": provider}, BillingSettings(data_dir=tmp_path)), store, sandbox)
    owner = await customer(billing)
    subscribe = plan(customer_id=owner["id"])
    with faults.hook(subscription_commands.AFTER_SUBSCRIPTION_CALL, crash), pytest.raises(RuntimeError):
        await billing.send("create_subscription", subscribe, key="s-moved")
    moved = {"customer_id": owner["id"], "payment_method": "pm_card_mastercard"}
    assert (await billing.send("update_customer", moved))["body"]["default_payment_method"] == "pm_card_mastercard"

    again = await billing.send("create_subscription", subscribe, key="s-moved", redelivered=True)
    later = await billing.send("create_subscription", subscribe, key="s-later")
    await sandbox.close()

    assert again["status"] == 201 and later["status"] == 201
    assert provider.payment_methods == ["pm_card_visa", "pm_card_visa", "pm_card_mastercard"]


class CustomerAnswersLost(AnswersLost):
    """The same for customer creations (subscriptions pass through)."""

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        return await self._attempt(request.accepted_at, partial(self._inner.create_customer, request))

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        result: ProviderResult = await self._inner.create_subscription(request)
        return result


async def test_every_attempt_of_a_customer_tells_the_provider_when_it_was_first_accepted(tmp_path: Path) -> None:
    """Stripe forgets an idempotency key after 24 hours: its adapter looks for the customer an earlier attempt
    made once the command was accepted that long ago, which every attempt must tell alike."""
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    provider = CustomerAnswersLost(SandboxBilling(sandbox.ledger), lost=2)
    settings = BillingSettings(data_dir=tmp_path, provider_retry_attempts=1)
    billing = Billing(
        build_worker(InMemoryEventStore(), {"sandbox": provider}, settings), InMemoryEventStore(), sandbox
    )
    first_day, next_day = "2030-01-01T23:59:59.000000Z", "2030-01-02T00:00:05.000000Z"
    create = {"email": "late@example.com"}

    assert (await billing.send("create_customer", create, key="c-late", issued_at=first_day))["status"] == 503
    assert (await billing.send("create_customer", create, key="c-late", issued_at=next_day))["status"] == 503
    assert await billing.worker.recover(0) == 1
    await sandbox.close()

    assert provider.accepted == [datetime(2030, 1, 1, 23, 59, 59, tzinfo=UTC)] * 3


async def eventually_found(billing: Billing, subscription_id: str, within_s: float = 5.0) -> dict[str, Any]:
    for _ in range(int(within_s / 0.05)):
        got = await billing.send("get_subscription", {"subscription_id": subscription_id})
        if got["status"] == 200:
            return got
        await asyncio.sleep(0.05)
    return got


async def test_a_subscription_made_behind_a_503_is_recorded_by_the_sweep_without_restart_or_retry(
    tmp_path: Path,
) -> None:
    """Every attempt's answer is lost (timeouts after the provider acted): the client gets 503 and the key is
    released, but ARB/Stripe bill the subscription. The running worker's sweep finishes the journaled command."""
    store, broker = InMemoryEventStore(), InMemoryBroker()
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    settings = BillingSettings(data_dir=tmp_path, recovery_interval_s=0.05, recovery_min_age_s=0)
    provider = AnswersLost(SandboxBilling(sandbox.ledger), lost=settings.provider_retry_attempts)
    worker = await start_billing(broker, store, {"sandbox": provider}, settings)
    billing = Billing(worker, store, sandbox)
    try:
        owner = await customer(billing)
        subscribe = plan(customer_id=owner["id"])
        reply = await billing.send("create_subscription", subscribe, key="s-lost")
        assert reply["status"] == 503 and sandbox.ledger.count() == 2  # the provider made and billed it

        subscription_id = ids.derived_id("sub", ids.command_id("ws_a", "s-lost"))
        got = await eventually_found(billing, subscription_id)
        assert got["status"] == 200 and got["body"]["status"] == "active"
        replay = await billing.send("create_subscription", subscribe, key="s-lost")
        assert replay["status"] == 201 and replay["headers"]["Idempotent-Replayed"] == "true"
        assert sandbox.ledger.count() == 2 and len(provider.accepted) == settings.provider_retry_attempts + 1
        await worker.stop()
    finally:
        await broker.close()
        await sandbox.close()


async def test_a_sweep_racing_the_clients_retry_makes_one_subscription(tmp_path: Path) -> None:
    """The sweep runs while the client's retry (after the 503) is at the provider: the guard keeps the key with the
    retry, so the sweep calls nothing; whichever finishes, one subscription is made and recorded."""
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    provider = AnswersLost(SandboxBilling(sandbox.ledger), lost=1)
    settings = BillingSettings(data_dir=tmp_path, provider_retry_attempts=1, recovery_min_age_s=0)
    store = InMemoryEventStore()
    billing = Billing(build_worker(store, {"sandbox": provider}, settings), store, sandbox)
    owner = await customer(billing)
    subscribe = plan(customer_id=owner["id"])
    assert (await billing.send("create_subscription", subscribe, key="s-race"))["status"] == 503

    provider.held = asyncio.Event()
    provider.called.clear()
    retry = asyncio.create_task(billing.send("create_subscription", subscribe, key="s-race"))
    await provider.called.wait()  # the client's retry holds the key, its provider call under way
    swept = await billing.worker.sweep()
    provider.held.set()
    retried = await retry
    billed = sandbox.ledger.count()
    await sandbox.close()

    subscription_id = ids.derived_id("sub", ids.command_id("ws_a", "s-race"))
    assert swept == 1 and retried["status"] == 201
    assert len(provider.accepted) == 2  # the sweep found the key held (409) and called no provider
    assert await subscription_events(billing, subscription_id) == ["SubscriptionCreated"]
    assert billed == 2  # the customer and one subscription


async def _crashed_update(billing: Billing, subscription_id: str, key: str) -> None:
    def crash() -> None:
        raise RuntimeError("crash between the provider call and the outcome")

    with faults.hook(serialized.AFTER_CHANGE_CALL, crash), pytest.raises(RuntimeError):
        await billing.send("update_subscription", {"subscription_id": subscription_id, "quantity": 5}, key=key)


def _update_history(events: list[Any]) -> list[tuple[str, Any]]:
    return [
        (event.type, event.data.get("changes", event.data.get("requested", {})).get("quantity"))
        for event in events
        if event.type.startswith("SubscriptionUpdate")
    ]


async def _held_back_by_a_crashed_update(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A subscription whose update to 5 (key k-five) crashed after its provider call, and a PUT of 7 (key k-seven)
    that it held back (409): the subscription and that PUT's body."""
    monkeypatch.setattr(serialized, "WAIT_S", 0.2)
    owner = await customer(billing)
    subscription: dict[str, Any] = (await billing.send("create_subscription", plan(customer_id=owner["id"])))["body"]
    await _crashed_update(billing, subscription["id"], "k-five")
    seven = {"subscription_id": subscription["id"], "quantity": 7}
    held_back = await billing.send("update_subscription", seven, key="k-seven")
    assert (held_back["status"], held_back["body"]["error"]["code"]) == (409, "operation_in_progress")
    return subscription, seven


async def test_an_update_left_open_by_a_crash_holds_back_others_until_redriven_with_its_key(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscription, other = await _held_back_by_a_crashed_update(billing, monkeypatch)

    redriven = await billing.send(
        "update_subscription", {"subscription_id": subscription["id"], "quantity": 5}, key="k-five", redelivered=True
    )
    assert (redriven["status"], redriven["body"]["quantity"]) == (200, 5)
    retried = await billing.send("update_subscription", other, key="k-seven")  # its 409 was not kept
    assert (retried["status"], retried["body"]["quantity"]) == (200, 7)
    assert billing.sandbox.ledger.count(ids.command_id("ws_a", "k-five")) == 1
    history = await billing.store.read(f"subscription-{subscription['id']}")
    assert _update_history(history) == [
        ("SubscriptionUpdateRequested", 5),
        ("SubscriptionUpdated", 5),
        ("SubscriptionUpdateRequested", 7),
        ("SubscriptionUpdated", 7),
    ]


async def test_a_change_refused_as_in_progress_is_not_run_again_by_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its client was told 409 and nothing of it was recorded: only the client's own retry may still make it."""
    store, sandbox = InMemoryEventStore(), SandboxProvider(tmp_path / "sandbox.db")
    settings = BillingSettings(data_dir=tmp_path, recovery_min_age_s=0)
    billing = Billing(build_worker(store, {"sandbox": sandbox}, settings), store, sandbox)
    subscription, _ = await _held_back_by_a_crashed_update(billing, monkeypatch)
    five = {"subscription_id": subscription["id"], "quantity": 5}
    assert (await billing.send("update_subscription", five, key="k-five", redelivered=True))["status"] == 200

    assert await billing.worker.sweep() == 0

    got = await billing.send("get_subscription", {"subscription_id": subscription["id"]})
    assert got["body"]["quantity"] == 5
    await sandbox.close()


async def test_an_update_left_open_longer_than_the_window_is_finished_by_the_next_one(tmp_path: Path) -> None:
    store, sandbox = InMemoryEventStore(), SandboxProvider(tmp_path / "sandbox.db")
    worker = build_worker(store, {"sandbox": sandbox}, BillingSettings(data_dir=tmp_path, in_flight_window_s=0.05))
    billing = Billing(worker, store, sandbox)
    owner = await customer(billing)
    subscription = (await billing.send("create_subscription", plan(customer_id=owner["id"])))["body"]
    await _crashed_update(billing, subscription["id"], "k-five")
    await asyncio.sleep(0.1)
    later = await billing.send("update_subscription", {"subscription_id": subscription["id"], "quantity": 7})
    assert (later["status"], later["body"]["quantity"]) == (200, 7)
    history = await billing.store.read(f"subscription-{subscription['id']}")
    assert _update_history(history) == [
        ("SubscriptionUpdateRequested", 5),
        ("SubscriptionUpdated", 5),
        ("SubscriptionUpdateRequested", 7),
        ("SubscriptionUpdated", 7),
    ]
    again = await billing.send(
        "update_subscription", {"subscription_id": subscription["id"], "quantity": 5}, key="k-five"
    )
    assert (again["status"], again["body"]["quantity"]) == (200, 5)  # its own outcome, recorded by the other
    assert billing.sandbox.ledger.count(ids.command_id("ws_a", "k-five")) == 1
    await sandbox.close()


class ScanCountingStore(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    def read_all(self, from_position: int = 0) -> AsyncIterator[Any]:
        self.scans += 1
        return super().read_all(from_position)


async def test_the_sweep_reads_no_event_of_the_store_yet_finds_what_this_process_accepted(tmp_path: Path) -> None:
    """Reading every event appended since the last sweep, every few seconds, cost a busy system's charges."""
    store, sandbox = ScanCountingStore(), SandboxProvider(tmp_path / "sandbox.db")
    provider = AnswersLost(SandboxBilling(sandbox.ledger), lost=1)
    settings = BillingSettings(data_dir=tmp_path, provider_retry_attempts=1, recovery_min_age_s=0)
    billing = Billing(build_worker(store, {"sandbox": provider}, settings), store, sandbox)
    assert await billing.worker.recover(0) == 0  # start-up: the store is read once
    billing.worker.start_sweeping()  # then followed: what any worker journals is noted as it is appended
    scans_at_start = store.scans
    owner = await customer(billing)
    lost = await billing.send("create_subscription", plan(customer_id=owner["id"]), key="s-lost")
    assert lost["status"] == 503

    assert await billing.worker.sweep() == 1
    assert await billing.worker.sweep() == 0

    assert store.scans == scans_at_start
    found = await billing.send(
        "get_subscription", {"subscription_id": ids.derived_id("sub", ids.command_id("ws_a", "s-lost"))}
    )
    assert found["status"] == 200
    await billing.worker.stop()
    await sandbox.close()


def failing_first_time() -> Any:
    """A fault hook that raises (as a bug in one command would) the first time it is reached, never again."""
    reached: list[bool] = []

    def fail() -> None:
        if not reached:
            reached.append(True)
            raise RuntimeError("a bug met by one command")

    return fail


def failure_logged_for(caplog: pytest.LogCaptureFixture, key: str) -> bool:
    return any(
        getattr(record, "command_id", None) == ids.command_id("ws_a", key) and record.levelname == "ERROR"
        for record in caplog.records
    )


async def test_a_command_that_raises_at_start_up_does_not_keep_the_next_from_being_recovered(
    billing: Billing, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def crash() -> None:
        raise RuntimeError("crash")

    payload = {"email": "a@example.com", "payment_method": "pm_card_visa"}
    for key in ("k-first", "k-second"):
        with faults.hook(BEFORE_RECORD, crash), pytest.raises(RuntimeError):
            await billing.send("create_customer", payload, key=key)
    billing.worker = build_worker(billing.store, {"sandbox": billing.sandbox}, BillingSettings(data_dir=tmp_path))

    with faults.hook(BEFORE_RECORD, failing_first_time()):
        assert await billing.worker.recover(0) == 1

    assert failure_logged_for(caplog, "k-first")
    second = await billing.send("create_customer", payload, key="k-second")
    assert second["status"] == 201 and second["headers"]["Idempotent-Replayed"] == "true"
    assert await billing.worker.recover(0) == 1  # the first one, left open, runs again
    first = await billing.send("create_customer", payload, key="k-first")
    assert first["status"] == 201 and first["headers"]["Idempotent-Replayed"] == "true"
    assert billing.sandbox.ledger.count() == 2


async def test_a_command_that_raises_in_a_sweep_does_not_keep_the_next_from_being_swept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    provider = AnswersLost(SandboxBilling(sandbox.ledger), lost=2)
    settings = BillingSettings(
        data_dir=tmp_path, provider_retry_attempts=1, recovery_min_age_s=0, in_flight_window_s=0.05
    )
    store = InMemoryEventStore()
    billing = Billing(build_worker(store, {"sandbox": provider}, settings), store, sandbox)
    owner = await customer(billing)
    subscribe = plan(customer_id=owner["id"])
    for key in ("s-first", "s-second"):
        assert (await billing.send("create_subscription", subscribe, key=key))["status"] == 503

    with faults.hook(BEFORE_RECORD, failing_first_time()):
        assert await billing.worker.sweep() == 1

    assert failure_logged_for(caplog, "s-first")
    second = await billing.send("create_subscription", subscribe, key="s-second")
    assert second["status"] == 201 and second["headers"]["Idempotent-Replayed"] == "true"
    await asyncio.sleep(0.1)  # the failed run's claim on the first key is past the in-flight window
    assert await billing.worker.sweep() == 1
    assert await billing.worker.sweep() == 0
    first = await billing.send("create_subscription", subscribe, key="s-first")
    assert first["status"] == 201 and first["headers"]["Idempotent-Replayed"] == "true"
    assert sandbox.ledger.count() == 3  # the customer and one subscription per key
    await sandbox.close()


async def test_deleting_a_customer_finishes_an_update_left_open_by_a_crash_before_canceling(tmp_path: Path) -> None:
    """The deletion's cancel is serialised with the subscription's changes: the update a crash left open is carried
    out first (under its own key, once), then the cancel; none is left open on the canceled subscription."""
    store, sandbox = InMemoryEventStore(), SandboxProvider(tmp_path / "sandbox.db")
    worker = build_worker(store, {"sandbox": sandbox}, BillingSettings(data_dir=tmp_path, in_flight_window_s=0.05))
    billing = Billing(worker, store, sandbox)
    owner = await customer(billing)
    subscription = await subscription_of(billing, owner["id"])
    await _crashed_update(billing, subscription["id"], "k-five")
    await asyncio.sleep(0.1)  # older than the in-flight window: left by the crash

    deleted = await billing.send("delete_customer", {"customer_id": owner["id"]}, key="k-del")

    assert deleted["status"] == 200, deleted
    assert await subscription_events(billing, subscription["id"]) == [
        "SubscriptionCreated",
        "SubscriptionUpdateRequested",
        "SubscriptionUpdated",
        "SubscriptionCancelRequested",
        "SubscriptionCanceled",
    ]
    got = await billing.send("get_subscription", {"subscription_id": subscription["id"]})
    assert (got["body"]["status"], got["body"]["quantity"]) == ("canceled", 5)
    assert billing.sandbox.ledger.count(ids.command_id("ws_a", "k-five")) == 1
    await sandbox.close()


def _crash() -> None:
    raise RuntimeError("crash")


def _customer_operations(billing: Billing) -> list[str]:
    """The sandbox's customer calls, in the order it took them."""
    return [entry.operation for entry in billing.sandbox.ledger.entries() if entry.operation.endswith("_customer")]


async def test_a_customer_update_open_when_a_deletion_comes_holds_it_back_then_ends_first(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DELETE finding a PUT of the customer open (here left by a crash after its provider call) waits for it
    as another PUT would: 409 `operation_in_progress` while it is in flight; once the PUT is redriven, the deletion
    goes ahead. The stream and the provider see update, then deletion (the deletion went first at the provider
    and the update was left open for good, probe)."""
    monkeypatch.setattr(serialized, "WAIT_S", 0.2)
    owner = await customer(billing)
    renamed = {"customer_id": owner["id"], "name": "Renamed"}
    with faults.hook(serialized.AFTER_CHANGE_CALL, _crash), pytest.raises(RuntimeError):
        await billing.send("update_customer", renamed, key="k-rename")

    held_back = await billing.send("delete_customer", {"customer_id": owner["id"]}, key="k-del")
    assert (held_back["status"], held_back["body"]["error"]["code"]) == (409, "operation_in_progress")
    redriven = await billing.send("update_customer", renamed, key="k-rename", redelivered=True)
    assert (redriven["status"], redriven["body"]["name"]) == (200, "Renamed")
    deleted = await billing.send("delete_customer", {"customer_id": owner["id"]}, key="k-del")

    assert deleted["status"] == 200, deleted
    history = await billing.store.read(f"customer-{owner['id']}")
    assert [event.type for event in history] == [
        "CustomerCreated",
        "CustomerUpdateRequested",
        "CustomerUpdated",
        "CustomerDeleted",
    ]
    assert check_customer(history) == []
    assert _customer_operations(billing) == ["create_customer", "update_customer", "delete_customer"]


async def test_a_deletion_waits_for_an_update_in_flight_and_is_recorded_after_it(billing: Billing) -> None:
    """The probe's order: a PUT accepted (recorded as requested, not sent yet) and a DELETE delivered beside it.
    The deletion waits while the update is carried out, then deletes: one order in the stream and at the
    provider."""
    owner = await customer(billing)
    renamed = {"customer_id": owner["id"], "name": "Renamed"}
    with faults.hook(serialized.AFTER_CHANGE_REQUESTED, _crash), pytest.raises(RuntimeError):
        await billing.send("update_customer", renamed, key="k-rename")

    deleting = asyncio.create_task(billing.send("delete_customer", {"customer_id": owner["id"]}, key="k-del"))
    await asyncio.sleep(0.1)
    assert not deleting.done()  # waiting for the update
    redriven = await billing.send("update_customer", renamed, key="k-rename", redelivered=True)
    deleted = await deleting

    assert (redriven["status"], deleted["status"]) == (200, 200), (redriven, deleted)
    history = await billing.store.read(f"customer-{owner['id']}")
    assert [event.type for event in history][1:] == ["CustomerUpdateRequested", "CustomerUpdated", "CustomerDeleted"]
    assert _customer_operations(billing) == ["create_customer", "update_customer", "delete_customer"]


async def _update_failed_then_deleted(billing: Billing, customer_id: str) -> None:
    """The customer's history after its creation: the update refused by the provider, then the deletion."""
    history = await billing.store.read(f"customer-{customer_id}")
    types = [event.type for event in history][1:]
    assert types == ["CustomerUpdateRequested", "CustomerUpdateFailed", "CustomerDeleted"]
    assert check_customer(history) == []


async def test_an_update_sent_after_the_provider_deleted_the_customer_is_recorded_failed(billing: Billing) -> None:
    """A deletion that crashed between the provider's deletion and its append, then a PUT: the provider refuses the
    update (the customer is gone, as Stripe answers), its failure is recorded, and the deletion's redelivery
    records the deletion after it (deleted at the provider once, by its key)."""
    owner = await customer(billing)
    with faults.hook(customer_commands.AFTER_DELETE_CALL, _crash), pytest.raises(RuntimeError):
        await billing.send("delete_customer", {"customer_id": owner["id"]}, key="k-del")

    updated = await billing.send("update_customer", {"customer_id": owner["id"], "name": "Renamed"}, key="k-rename")
    deleted = await billing.send("delete_customer", {"customer_id": owner["id"]}, key="k-del", redelivered=True)

    assert (updated["status"], updated["body"]["error"]["code"]) == (404, "resource_missing"), updated
    assert deleted["status"] == 200, deleted
    await _update_failed_then_deleted(billing, owner["id"])
    assert billing.sandbox.ledger.count(ids.command_id("ws_a", "k-del")) == 1


async def test_verify_flags_a_deletion_recorded_while_an_update_had_no_outcome(billing: Billing) -> None:
    """The history the deletion left before it waited for updates: `payments-ops verify` names it."""
    owner = await customer(billing)
    with faults.hook(serialized.AFTER_CHANGE_REQUESTED, _crash), pytest.raises(RuntimeError):
        await billing.send("update_customer", {"customer_id": owner["id"], "name": "Renamed"}, key="k-rename")
    history = await billing.store.read(f"customer-{owner['id']}")
    deletion = dataclasses.replace(
        history[-1], type="CustomerDeleted", data={"deleted_at": "2026-11-28T18:00:00.000000Z"}, version=2
    )

    violations = [str(violation) for violation in check_customer([*history, deletion])]

    open_update = ids.command_id("ws_a", "k-rename")
    assert violations == [
        f"customer-{owner['id']} v2 CustomerDeleted: deleted while its update {open_update} had no outcome"
    ]


class _UpdateBeforeDeletion(InMemoryEventStore):
    """An event store where a PUT of the customer gets its request in just before the deletion's append."""

    def __init__(self) -> None:
        super().__init__()
        self.billing: Billing | None = None
        self.update: dict[str, Any] | None = None

    async def append(self, stream: str, events: Sequence[NewEvent], expected_version: int) -> int:
        if self.billing and self.update is None and any(event.type == "CustomerDeleted" for event in events):
            payload = {"customer_id": stream.removeprefix("customer-"), "name": "Renamed"}
            self.update = await self.billing.send("update_customer", payload, key="k-rename")
        return await super().append(stream, events, expected_version)


async def test_a_deletion_that_meets_an_update_requested_meanwhile_is_appended_after_its_outcome(
    tmp_path: Path,
) -> None:
    store, sandbox = _UpdateBeforeDeletion(), SandboxProvider(tmp_path / "sandbox.db")
    billing = Billing(build_worker(store, {"sandbox": sandbox}, BillingSettings(data_dir=tmp_path)), store, sandbox)
    owner = await customer(billing)
    store.billing = billing

    deleted = await billing.send("delete_customer", {"customer_id": owner["id"]}, key="k-del")

    assert deleted["status"] == 200, deleted
    assert store.update is not None and store.update["status"] == 404, store.update  # the customer was gone
    await _update_failed_then_deleted(billing, owner["id"])
    await sandbox.close()
