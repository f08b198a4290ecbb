"""The transactions service layer (worker.handle / recover) against real event-store adapters (in memory and a
SQLite file) and the real sandbox provider with its ledger; no broker: messages are handed to the worker as the
broker would deliver them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from payments_shared import faults, ids
from payments_shared.broker.port import Message
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import NO_STREAM, EventStore, NewEvent, RecordedEvent, WrongExpectedVersion
from payments_shared.idempotency import KEY_CLAIMED, created_stream, key_stream
from payments_shared.messages import Command
from payments_shared.providers.sandbox import SandboxProvider, SandboxSettings
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker

ROUTES = {
    "charge": "POST /api/v1/payments/charge",
    "authorize": "POST /api/v1/payments/authorize",
    "capture": "POST /api/v1/payments/capture",
    "refund": "POST /api/v1/payments/refund",
    "void": "POST /api/v1/payments/void",
}
VISA = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"}


class SimulatedCrash(Exception):
    pass


@pytest.fixture
def store(each_embedded_store: EventStore) -> EventStore:
    return each_embedded_store


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxProvider]:
    provider = SandboxProvider(tmp_path / "sandbox.db")
    yield provider
    await provider.close()


@pytest.fixture
def settings(tmp_path: Path) -> TransactionsSettings:
    return TransactionsSettings(data_dir=tmp_path, in_flight_window_s=30)


@pytest.fixture
def worker(store: EventStore, sandbox: SandboxProvider, settings: TransactionsSettings) -> TransactionsWorker:
    return TransactionsWorker(store, {"sandbox": sandbox}, settings)


class Client:
    """Builds commands the way the gateway does and hands them to the worker as deliveries."""

    def __init__(self, worker: TransactionsWorker, workspace: str = "ws_a") -> None:
        self.worker = worker
        self.workspace = workspace

    def command(self, kind: str, body: dict[str, Any], key: str | None = None) -> Command:
        command_id = ids.command_id(self.workspace, key)
        payload = dict(body)
        if kind in ("charge", "authorize"):
            payload = {**body, "transaction_id": ids.derived_id("txn", command_id), "provider": body.get("provider")}
        return Command(
            type=kind,
            workspace=self.workspace,
            actor="user_1",
            command_id=command_id,
            payload=payload,
            idempotency_key=key,
            fingerprint=ids.fingerprint(ROUTES.get(kind, kind), body),
        )

    async def deliver(self, command: Command, message_id: str | None = None, redelivered: bool = False) -> Any:
        message = Message(
            body=command.model_dump(),
            message_id=message_id or str(uuid.uuid4()),
            correlation_id=f"req-{uuid.uuid4().hex[:8]}",
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
            redelivered=redelivered,
            delivery_count=2 if redelivered else 1,
        )
        return await self.worker.handle(message)

    async def send(self, kind: str, body: dict[str, Any], key: str | None = None) -> Any:
        return await self.deliver(self.command(kind, body, key))

    async def get(self, transaction_id: str) -> Any:
        return await self.send("get_transaction", {"transaction_id": transaction_id})

    async def events(self, transaction_id: str) -> list[dict[str, Any]]:
        reply = await self.send("get_transaction_events", {"transaction_id": transaction_id})
        assert reply["status"] == 200
        events: list[dict[str, Any]] = reply["body"]["data"]
        return events

    async def approved(self, kind: str = "charge", amount: int = 1000) -> str:
        reply = await self.send(kind, {**VISA, "amount": amount})
        assert reply["status"] == 201, reply
        transaction_id: str = reply["body"]["id"]
        return transaction_id


@pytest.fixture
def client(worker: TransactionsWorker) -> Client:
    return Client(worker)


async def count_events(store: EventStore) -> int:
    return len([event async for event in store.read_all()])


def error_of(reply: Any) -> dict[str, Any]:
    error: dict[str, Any] = reply["body"]["error"]
    return error


# ---- charge / authorize -----------------------------------------------------------------------------------


async def test_an_approved_charge(client: Client, sandbox: SandboxProvider) -> None:
    reply = await client.send("charge", {**VISA, "description": "tea", "metadata": {"order": "42"}})
    assert reply["status"] == 201
    body = reply["body"]
    assert body["id"].startswith("txn_")
    assert (body["status"], body["amount_authorized"], body["amount_captured"]) == ("captured", 1000, 1000)
    assert (body["workspace"], body["provider"], body["description"], body["metadata"]) == (
        "ws_a", "sandbox", "tea", {"order": "42"}
    )  # fmt: skip
    assert body["provider_reference"].startswith("sbx_")
    assert body["created_at"].endswith("Z")
    assert (await client.get(body["id"])) == {"status": 200, "body": body, "headers": {}}
    assert sandbox.ledger.count() == 1


async def test_the_audit_trail_carries_who_why_and_when(client: Client) -> None:
    transaction_id = await client.approved()
    events = await client.events(transaction_id)
    assert [event["type"] for event in events] == ["TransactionRequested", "PaymentCaptured"]
    assert [event["stream_version"] for event in events] == [0, 1]
    assert events[0]["position"] < events[1]["position"]
    for event in events:
        metadata = event["metadata"]
        assert metadata["actor"] == "user_1"
        assert metadata["workspace"] == "ws_a"
        assert metadata["correlation_id"].startswith("req-")
        assert metadata["causation_id"]
        assert metadata["occurred_at"].endswith("Z")
        assert metadata["traceparent"].startswith("00-")
        assert not any(key.startswith("$") for key in metadata)
    assert events[0]["data"]["payment_method"] == {"type": "token", "token": "pm_card_visa"}


async def test_authorize_then_capture_everything(client: Client) -> None:
    transaction_id = await client.approved("authorize")
    assert (await client.get(transaction_id))["body"]["status"] == "authorized"
    reply = await client.send("capture", {"transaction_id": transaction_id})
    assert reply["status"] == 200
    assert (reply["body"]["status"], reply["body"]["amount_captured"]) == ("captured", 1000)


async def test_a_partial_capture_releases_the_rest_and_a_second_capture_conflicts(client: Client) -> None:
    transaction_id = await client.approved("authorize")
    reply = await client.send("capture", {"transaction_id": transaction_id, "amount": 600})
    body = reply["body"]
    assert (reply["status"], body["status"], body["amount_authorized"], body["amount_captured"]) == (
        200, "captured", 1000, 600
    )  # fmt: skip
    again = await client.send("capture", {"transaction_id": transaction_id, "amount": 100})
    assert (again["status"], error_of(again)["type"]) == (409, "conflict")


async def test_capture_above_the_authorized_amount_is_a_conflict(client: Client) -> None:
    transaction_id = await client.approved("authorize")
    reply = await client.send("capture", {"transaction_id": transaction_id, "amount": 1001})
    assert reply["status"] == 409
    assert "greater than the authorized amount (1000)" in error_of(reply)["message"]


async def test_void_and_what_it_forbids(client: Client) -> None:
    transaction_id = await client.approved("authorize")
    voided = await client.send("void", {"transaction_id": transaction_id})
    assert (voided["status"], voided["body"]["status"]) == (200, "voided")
    for kind in ("capture", "void", "refund"):
        reply = await client.send(kind, {"transaction_id": transaction_id})
        assert reply["status"] == 409, kind
        assert "voided" in error_of(reply)["message"]
    captured = await client.approved("charge")
    assert (await client.send("void", {"transaction_id": captured}))["status"] == 409


async def test_refund_partially_then_the_rest(client: Client) -> None:
    transaction_id = await client.approved("charge")
    first = await client.send("refund", {"transaction_id": transaction_id, "amount": 300, "reason": "duplicate"})
    assert first["status"] == 200
    assert (first["body"]["status"], first["body"]["amount_refunded"]) == ("partially_refunded", 300)
    rest = await client.send("refund", {"transaction_id": transaction_id})
    body = rest["body"]
    assert (body["status"], body["amount_refunded"]) == ("refunded", 1000)
    assert [(refund["amount"], refund["status"]) for refund in body["refunds"]] == [
        (300, "succeeded"),
        (700, "succeeded"),
    ]
    assert all(refund["id"].startswith("re_") for refund in body["refunds"])
    over = await client.send("refund", {"transaction_id": transaction_id, "amount": 1})
    assert over["status"] == 409


async def test_a_refund_above_the_refundable_amount_is_a_conflict(client: Client) -> None:
    transaction_id = await client.approved("charge")
    reply = await client.send("refund", {"transaction_id": transaction_id, "amount": 1001})
    assert reply["status"] == 409
    assert error_of(reply)["message"] == "The refund amount (1001) is greater than the refundable amount (1000)."


@pytest.mark.parametrize(
    ("method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
    ],
)
async def test_declines_are_402_and_the_transaction_failed(client: Client, method: str, decline_code: str) -> None:
    reply = await client.send("charge", {**VISA, "payment_method": method})
    assert reply["status"] == 402
    error = error_of(reply)
    assert (error["type"], error["code"], error["decline_code"]) == ("card_error", "card_declined", decline_code)
    transaction = (await client.get(error["transaction_id"]))["body"]
    assert (transaction["status"], transaction["failure_code"]) == ("failed", decline_code)
    assert transaction["failure_message"] == error["message"]


async def test_authentication_required(client: Client) -> None:
    reply = await client.send("authorize", {**VISA, "payment_method": "pm_card_authenticationRequired"})
    assert reply["status"] == 201
    assert reply["body"]["status"] == "requires_action"
    assert reply["body"]["next_action"]["type"] == "redirect_to_url"


async def test_a_processing_error_is_502(client: Client) -> None:
    reply = await client.send("charge", {**VISA, "payment_method": "pm_card_processingError"})
    assert (reply["status"], error_of(reply)["type"]) == (502, "provider_error")
    transaction = (await client.get(error_of(reply)["transaction_id"]))["body"]
    assert transaction["status"] == "failed"


async def test_an_unknown_payment_method_is_400_on_payment_method(client: Client) -> None:
    reply = await client.send("charge", {**VISA, "payment_method": "pm_nothing_like_it"})
    assert reply["status"] == 400
    assert (error_of(reply)["type"], error_of(reply)["param"]) == ("invalid_request_error", "payment_method")


async def test_accept_js_data_value_is_never_stored(client: Client, store: EventStore) -> None:
    opaque = {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": "SECRET-NONCE-VALUE"}
    reply = await client.send("charge", {**VISA, "payment_method": opaque})
    assert reply["status"] == 400  # the sandbox takes only test payment-method names
    stored = [event async for event in store.read_all()]
    assert stored
    assert "SECRET-NONCE-VALUE" not in repr([(event.data, event.metadata) for event in stored])


async def test_a_provider_not_configured_here_is_400_on_provider_and_a_failed_transaction(
    client: Client, store: EventStore
) -> None:
    """The gateway may have answered 202 `pending` with this id already (its providers may differ): GET finds the
    transaction failed, and why; a repeat with the key replays the refusal."""
    reply = await client.send("charge", {**VISA, "provider": "stripe"}, key="order-stripe")
    transaction_id = ids.derived_id("txn", ids.command_id(client.workspace, "order-stripe"))
    assert reply["status"] == 400
    assert error_of(reply) == {
        "type": "invalid_request_error",
        "code": "provider_not_configured",
        "message": "The provider 'stripe' is unknown or not configured.",
        "param": "provider",
        "transaction_id": transaction_id,
    }
    shown = (await client.get(transaction_id))["body"]
    assert (shown["status"], shown["provider"], shown["amount_captured"]) == ("failed", "stripe", 0)
    assert (shown["failure_code"], shown["failure_message"]) == ("invalid_provider", error_of(reply)["message"])
    assert [event["type"] for event in await client.events(transaction_id)] == ["TransactionRequested", "PaymentFailed"]
    events = await count_events(store)
    again = await client.send("charge", {**VISA, "provider": "stripe"}, key="order-stripe")
    assert (again["status"], again["body"], again["headers"]["Idempotent-Replayed"]) == (400, reply["body"], "true")
    assert await count_events(store) == events


# ---- idempotency ---------------------------------------------------------------------------------------------


async def test_replays_are_byte_identical_and_add_no_event(client: Client, store: EventStore, sandbox) -> None:
    first = await client.send("charge", VISA, key="order-1")
    assert first["status"] == 201 and first["headers"] == {}
    events_after_first = await count_events(store)
    for _ in range(3):
        again = await client.send("charge", VISA, key="order-1")
        assert again["status"] == 201
        assert again["body"] == first["body"]
        assert again["headers"] == {"Idempotent-Replayed": "true"}
    assert await count_events(store) == events_after_first
    assert sandbox.ledger.count() == 1


async def test_a_replay_answers_the_first_response_even_after_later_changes(client: Client) -> None:
    first = await client.send("charge", VISA, key="order-2")
    await client.send("refund", {"transaction_id": first["body"]["id"], "amount": 100})
    again = await client.send("charge", VISA, key="order-2")
    assert again["body"] == first["body"]
    assert again["body"]["status"] == "captured"


async def test_a_declined_charge_replays_its_402(client: Client) -> None:
    body = {**VISA, "payment_method": "pm_card_chargeDeclined"}
    first = await client.send("charge", body, key="declined")
    again = await client.send("charge", body, key="declined")
    assert (first["status"], again["status"]) == (402, 402)
    assert again["body"] == first["body"]


async def test_the_same_key_with_another_body_is_422(client: Client) -> None:
    await client.send("charge", VISA, key="order-3")
    reply = await client.send("charge", {**VISA, "amount": 999}, key="order-3")
    assert (reply["status"], error_of(reply)["type"]) == (422, "idempotency_error")
    authorize = await client.send("authorize", VISA, key="order-3")
    assert authorize["status"] == 422


async def test_sixteen_concurrent_identical_charges_make_one_transaction(client, store, sandbox) -> None:
    replies = await asyncio.gather(*(client.send("charge", VISA, key="burst") for _ in range(16)))
    statuses = [reply["status"] for reply in replies]
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    streams = {event.stream async for event in store.read_all()}
    assert len(streams) == 1
    assert sandbox.ledger.count() == 1
    assert {reply["body"]["id"] for reply in replies if reply["status"] == 201} == {next(iter(streams))[12:]}


async def test_one_key_in_two_workspaces_is_two_transactions(worker: TransactionsWorker, sandbox) -> None:
    first = await Client(worker, "ws_a").send("charge", VISA, key="shared-key")
    second = await Client(worker, "ws_b").send("charge", VISA, key="shared-key")
    assert (first["status"], second["status"]) == (201, 201)
    assert first["body"]["id"] != second["body"]["id"]
    assert sandbox.ledger.count() == 2


async def test_keyed_follow_ups_replay_their_first_response(client: Client, store: EventStore, sandbox) -> None:
    transaction_id = await client.approved("charge")
    body = {"transaction_id": transaction_id, "amount": 100}
    first = await client.send("refund", body, key="refund-1")
    assert first["status"] == 200
    events = await count_events(store)
    for _ in range(3):
        again = await client.send("refund", body, key="refund-1")
        assert again["body"] == first["body"]
        assert again["headers"] == {"Idempotent-Replayed": "true"}
    assert await count_events(store) == events
    assert (await client.get(transaction_id))["body"]["amount_refunded"] == 100
    assert sandbox.ledger.count() == 2  # the charge and one refund
    other = await client.send("refund", {**body, "amount": 200}, key="refund-1")
    assert other["status"] == 422


async def test_a_keyed_conflict_is_kept_too(client: Client) -> None:
    transaction_id = await client.approved("charge")
    first = await client.send("void", {"transaction_id": transaction_id}, key="void-1")
    again = await client.send("void", {"transaction_id": transaction_id}, key="void-1")
    assert (first["status"], again["status"]) == (409, 409)
    assert again["body"] == first["body"]


async def test_a_key_is_for_one_kind_of_request(client: Client) -> None:
    charged = await client.send("charge", VISA, key="multi")
    refund = await client.send("refund", {"transaction_id": charged["body"]["id"]}, key="multi")
    assert (refund["status"], error_of(refund)["type"]) == (422, "idempotency_error")
    transaction_id = await client.approved("charge")
    refunded = await client.send("refund", {"transaction_id": transaction_id}, key="refund-first")
    assert refunded["status"] == 200
    charge = await client.send("charge", VISA, key="refund-first")
    assert (charge["status"], error_of(charge)["code"]) == (422, "idempotency_key_reused")
    refused = (await client.get(error_of(charge)["transaction_id"]))["body"]  # a 202 may have promised it
    assert (refused["status"], refused["failure_code"]) == ("failed", "idempotency_key_reused")
    again = await client.send("charge", VISA, key="refund-first")
    assert (again["status"], again["body"]) == (422, charge["body"])
    refund_again = await client.send("refund", {"transaction_id": transaction_id}, key="refund-first")
    assert (refund_again["status"], refund_again["body"]) == (200, refunded["body"])  # the key's refund, replayed
    assert refund_again["headers"]["Idempotent-Replayed"] == "true"


class ClaimedAround:
    """The real store, where another request claims a charge's key (and is still running) just before the charge
    creates its transaction (`before`), after the charge could have looked for a claim; or just after."""

    def __init__(self, store: EventStore, key: str, *, before: bool) -> None:
        self._store = store
        self._command_id = ids.command_id("ws_a", key)
        self._before = before

    async def append(self, stream: str, events: Any, expected_version: int) -> int:
        creating = stream == created_stream(self._command_id) and expected_version == NO_STREAM
        if creating and self._before:
            await self._claim()
        position = await self._store.append(stream, events, expected_version)
        if creating and not self._before:
            await self._claim()
        return position

    async def _claim(self) -> None:
        claim = {"fingerprint": "fp", "route": "refund", "target": None, "message_id": "m"}
        with contextlib.suppress(WrongExpectedVersion):
            await self._store.append(key_stream(self._command_id), [NewEvent(KEY_CLAIMED, claim, {})], NO_STREAM)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def claimed_around(store: EventStore, sandbox: SandboxProvider, settings: TransactionsSettings, **kw: Any) -> Client:
    around = ClaimedAround(store, "claimed", **kw)
    return Client(TransactionsWorker(around, {"sandbox": sandbox}, settings))


async def test_a_charge_whose_key_was_claimed_just_before_its_transaction_is_refused_and_sends_nothing(
    store: EventStore, sandbox: SandboxProvider, settings: TransactionsSettings
) -> None:
    """The claim was committed first, so it won the key (its request found no transaction and went ahead): the
    charge, looking once it has created its transaction, is recorded failed and never reaches the provider."""
    client = claimed_around(store, sandbox, settings, before=True)
    charge = await client.send("charge", VISA, key="claimed")
    assert (charge["status"], error_of(charge)["code"]) == (422, "idempotency_key_reused")
    refused = (await client.get(error_of(charge)["transaction_id"]))["body"]
    assert (refused["status"], refused["failure_code"]) == ("failed", "idempotency_key_reused")
    assert sandbox.ledger.count() == 0


async def test_a_charge_whose_key_is_claimed_just_after_its_transaction_goes_ahead(
    store: EventStore, sandbox: SandboxProvider, settings: TransactionsSettings
) -> None:
    """The transaction was committed first: the claiming request, looking after its claim, gives way."""
    client = claimed_around(store, sandbox, settings, before=False)
    charge = await client.send("charge", VISA, key="claimed")
    assert (charge["status"], charge["body"]["status"]) == (201, "captured")
    assert sandbox.ledger.count() == 1


@pytest.mark.parametrize("carried_on_by", ["redelivery", "recovery"])
async def test_a_charge_that_died_before_looking_at_its_key_is_refused_by_whoever_carries_it_on(
    store: EventStore, sandbox: SandboxProvider, settings: TransactionsSettings, carried_on_by: str
) -> None:
    """Killed between creating its transaction and looking for a claim: the next attempt looks first too, and
    refuses it (nothing of it can have reached the provider, so refusing is safe)."""
    client = claimed_around(store, sandbox, settings, before=True)
    command = client.command("charge", VISA, key="claimed")
    with faults.hook("after_transaction_requested", crash_once()), pytest.raises(SimulatedCrash):
        await client.deliver(command, message_id="msg-1")
    if carried_on_by == "redelivery":
        carried_on = await client.deliver(command, message_id="msg-1", redelivered=True)
        assert (carried_on["status"], error_of(carried_on)["code"]) == (422, "idempotency_key_reused")
    else:
        assert await client.worker.recover(min_age_s=0) == 1
    refused = (await client.get(command.payload["transaction_id"]))["body"]
    assert (refused["status"], refused["failure_code"]) == ("failed", "idempotency_key_reused")
    assert sandbox.ledger.count() == 0


async def test_a_charge_racing_another_request_with_its_key_never_both_go_ahead(racing, sandbox) -> None:
    """Both sides claim before they look for the other's claim, and the first committed keeps the key: interleaved at
    every read, exactly one of a charge and a refund sent at once with one key is refused for it (422); a refused
    charge is recorded failed, never sent."""
    client, _ = racing
    to_refund = await client.approved("charge", amount=5000)
    keys = [f"both-{index}" for index in range(8)]
    pairs = await asyncio.gather(
        *(
            asyncio.gather(
                client.send("charge", VISA, key=key),
                client.send("refund", {"transaction_id": to_refund, "amount": 10}, key=key),
            )
            for key in keys
        )
    )
    for charge, refund in pairs:
        assert not (charge["status"] in (200, 201) and refund["status"] == 200), (charge, refund)
        assert (charge["status"] == 422) != (refund["status"] == 422), (charge, refund)
        if charge["status"] == 422:
            refused = (await client.get(error_of(charge)["transaction_id"]))["body"]
            assert refused["status"] == "failed"
    charged = sum(charge["status"] == 201 for charge, _ in pairs)
    refunded = sum(refund["status"] == 200 for _, refund in pairs)
    operations = [entry.operation for entry in sandbox.ledger.entries()]
    assert (operations.count("pay"), operations.count("refund")) == (1 + charged, refunded)


# ---- concurrency ---------------------------------------------------------------------------------------------


class Interleaving:
    """The real store, but every read yields to other tasks first, so concurrent commands all read the same
    version before any of them appends: the optimistic-concurrency path (conflict, reload, re-check) must run."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.conflicts = 0

    async def read(self, stream: str, from_version: int = 0) -> Any:
        recorded = await self._store.read(stream, from_version)
        await asyncio.sleep(0.005)
        return recorded

    async def append(self, stream: str, events: Any, expected_version: int) -> int:
        try:
            return await self._store.append(stream, events, expected_version)
        except WrongExpectedVersion:
            self.conflicts += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture(params=["plain", "interleaving"])
def racing(request: pytest.FixtureRequest, store: EventStore, sandbox, settings) -> tuple[Client, Interleaving | None]:
    if request.param == "plain":
        return Client(TransactionsWorker(store, {"sandbox": sandbox}, settings)), None
    interleaving = Interleaving(store)
    worker = TransactionsWorker(interleaving, {"sandbox": sandbox}, settings)
    return Client(worker), interleaving


async def test_concurrent_refunds_never_exceed_what_was_captured(racing, sandbox) -> None:
    client, interleaving = racing
    transaction_id = await client.approved("charge")
    replies = await asyncio.gather(
        *(client.send("refund", {"transaction_id": transaction_id, "amount": 300}) for _ in range(10))
    )
    statuses = sorted(reply["status"] for reply in replies)
    assert statuses == [200] * 3 + [409] * 7
    transaction = (await client.get(transaction_id))["body"]
    assert transaction["amount_refunded"] == 900
    assert sum(refund["amount"] for refund in transaction["refunds"] if refund["status"] == "succeeded") == 900
    assert len([entry for entry in sandbox.ledger.entries() if entry.operation == "refund"]) == 3
    if interleaving is not None:
        assert interleaving.conflicts > 0


async def test_a_capture_racing_a_void_cannot_both_win(racing) -> None:
    client, interleaving = racing
    transaction_id = await client.approved("authorize")
    capture, void = await asyncio.gather(
        client.send("capture", {"transaction_id": transaction_id}),
        client.send("void", {"transaction_id": transaction_id}),
    )
    assert sorted([capture["status"], void["status"]]) == [200, 409]
    final = (await client.get(transaction_id))["body"]["status"]
    assert final == ("captured" if capture["status"] == 200 else "voided")
    if interleaving is not None:
        assert interleaving.conflicts > 0


async def test_sixteen_concurrent_charges_interleaved(racing, sandbox) -> None:
    client, _ = racing
    replies = await asyncio.gather(*(client.send("charge", VISA, key="burst-2") for _ in range(16)))
    assert {reply["status"] for reply in replies} <= {201, 409}
    assert sandbox.ledger.count() == 1


# ---- workspaces and queries -------------------------------------------------------------------------------


async def test_another_workspace_sees_404_everywhere(worker: TransactionsWorker) -> None:
    transaction_id = await Client(worker, "ws_a").approved("authorize")
    intruder = Client(worker, "ws_b")
    for kind in ("get_transaction", "get_transaction_events", "capture", "void", "refund"):
        reply = await intruder.send(kind, {"transaction_id": transaction_id})
        assert reply["status"] == 404, kind
        assert error_of(reply)["type"] == "not_found"
    assert (await Client(worker, "ws_a").get(transaction_id))["body"]["status"] == "authorized"


async def test_an_unknown_transaction_is_404(client: Client) -> None:
    for kind in ("get_transaction", "get_transaction_events", "capture", "void", "refund"):
        assert (await client.send(kind, {"transaction_id": "txn_000000000000000000000000"}))["status"] == 404


async def test_malformed_and_unknown_commands_are_400(worker: TransactionsWorker, client: Client) -> None:
    assert (await worker.handle(Message(body={"type": "charge"})))["status"] == 400
    assert (await client.send("teleport", {}))["status"] == 400


# ---- crashes, provider outages and recovery ------------------------------------------------------------------


def crash_once() -> Any:
    crashed: list[bool] = []

    def crash() -> None:
        if not crashed:
            crashed.append(True)
            raise SimulatedCrash

    return crash


@pytest.mark.parametrize("point", ["after_transaction_requested", "after_provider_call"])
async def test_a_crash_mid_charge_completes_once_on_redelivery(client, store, sandbox, point: str) -> None:
    command = client.command("charge", VISA, key="crashy")
    with faults.hook(point, crash_once()):
        with pytest.raises(SimulatedCrash):
            await client.deliver(command, message_id="msg-1")
        retry_elsewhere = await client.deliver(command, message_id="msg-2")  # a client retry while it is "running"
        assert retry_elsewhere["status"] == 409
        redelivered = await client.deliver(command, message_id="msg-1", redelivered=True)
    assert redelivered["status"] == 201
    assert redelivered["body"]["status"] == "captured"
    assert sandbox.ledger.count() == 1
    types = [event["type"] for event in await client.events(redelivered["body"]["id"])]
    assert types == ["TransactionRequested", "PaymentCaptured"]


@pytest.mark.parametrize("kind", ["refund", "capture", "void"])
async def test_a_crash_mid_follow_up_completes_once_on_redelivery(client: Client, sandbox, kind: str) -> None:
    transaction_id = await client.approved("charge" if kind == "refund" else "authorize")
    command = client.command(kind, {"transaction_id": transaction_id}, key=f"{kind}-crash")
    with faults.hook(f"after_{kind}_requested", crash_once()):
        with pytest.raises(SimulatedCrash):
            await client.deliver(command, message_id="msg-1")
        assert (await client.deliver(command, message_id="msg-2"))["status"] == 409
        reply = await client.deliver(command, message_id="msg-1", redelivered=True)
    assert reply["status"] == 200
    assert sandbox.ledger.count() == 2
    again = await client.deliver(command)
    assert again["body"] == reply["body"]


async def test_recover_drives_an_abandoned_charge_once(client: Client, worker: TransactionsWorker, sandbox) -> None:
    command = client.command("charge", VISA, key="abandoned")
    with faults.hook("after_transaction_requested", crash_once()), pytest.raises(SimulatedCrash):
        await client.deliver(command)
    assert await worker.recover(min_age_s=3600) == 0  # too young: perhaps still running elsewhere
    assert await worker.recover(min_age_s=0) == 1
    assert await worker.recover(min_age_s=0) == 0
    transaction_id = command.payload["transaction_id"]
    transaction = (await client.get(transaction_id))["body"]
    assert transaction["status"] == "captured"
    assert sandbox.ledger.count() == 1
    replay = await client.deliver(command)
    assert (replay["status"], replay["body"]) == (201, transaction)
    recovered = (await client.events(transaction_id))[-1]["metadata"]
    assert recovered["actor"] == "system:recovery"


async def test_recover_drives_an_abandoned_refund(client: Client, worker: TransactionsWorker) -> None:
    transaction_id = await client.approved("charge")
    command = client.command("refund", {"transaction_id": transaction_id, "amount": 250})
    with faults.hook("after_refund_requested", crash_once()), pytest.raises(SimulatedCrash):
        await client.deliver(command)
    assert (await client.get(transaction_id))["body"]["refunds"][0]["status"] == "pending"
    assert await worker.recover(min_age_s=0) == 1
    transaction = (await client.get(transaction_id))["body"]
    assert (transaction["status"], transaction["amount_refunded"]) == ("partially_refunded", 250)


async def _recovered_when_noted(worker: TransactionsWorker, expected: int) -> int:
    """`recover(0)` until it has driven `expected` commands in all, at most ~5 s; how many it drove. The follower
    notes appends within moments, one by one: a busy machine may let a run see the first and not yet the second."""
    driven = 0
    for _ in range(100):
        driven += await worker.recover(min_age_s=0)
        if driven >= expected:
            return driven
        await asyncio.sleep(0.05)
    return driven


async def test_a_following_sweep_drives_what_is_abandoned_after_it_started_without_reading_the_store_back(
    store: EventStore, sandbox: SandboxProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = TransactionsSettings(data_dir=tmp_path, recovery_interval_s=3600)
    worker = TransactionsWorker(store, {"sandbox": sandbox}, settings)
    client = Client(worker)
    await client.approved("charge")
    assert await worker.recover(min_age_s=0) == 0  # the start-up run: reads the store once
    worker.start_sweeping()
    reads_back: list[int] = []
    read_all = store.read_all

    def counted_read_all(from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        reads_back.append(from_position)
        return read_all(from_position)

    monkeypatch.setattr(store, "read_all", counted_read_all)
    try:
        charge = client.command("charge", VISA, key="abandoned-later")
        with faults.hook("after_transaction_requested", crash_once()), pytest.raises(SimulatedCrash):
            await client.deliver(charge)
        refund = client.command("refund", {"transaction_id": await client.approved("charge"), "amount": 250})
        with faults.hook("after_refund_requested", crash_once()), pytest.raises(SimulatedCrash):
            await client.deliver(refund)
        assert await _recovered_when_noted(worker, 2) == 2
        assert await worker.recover(min_age_s=0) == 0
    finally:
        await worker.stop()
    assert (await client.get(charge.payload["transaction_id"]))["body"]["status"] == "captured"
    assert (await client.get(refund.payload["transaction_id"]))["body"]["amount_refunded"] == 250
    assert sandbox.ledger.count() == 4  # three charges and one refund, each made once
    assert reads_back == []


async def test_a_following_sweep_drives_what_another_process_abandoned(
    store: EventStore, sandbox: SandboxProvider, tmp_path: Path
) -> None:
    settings = TransactionsSettings(data_dir=tmp_path, recovery_interval_s=3600)
    worker = TransactionsWorker(store, {"sandbox": sandbox}, settings)
    assert await worker.recover(min_age_s=0) == 0
    worker.start_sweeping()
    sqlite_file = tmp_path / "events.db"
    other_store = open_event_store(f"sqlite:///{sqlite_file}") if sqlite_file.exists() else store
    other = Client(TransactionsWorker(other_store, {"sandbox": sandbox}, settings))
    try:
        charge = other.command("charge", VISA, key="abandoned-elsewhere")
        with faults.hook("after_transaction_requested", crash_once()), pytest.raises(SimulatedCrash):
            await other.deliver(charge)
        assert await _recovered_when_noted(worker, 1) == 1
    finally:
        await worker.stop()
        if other_store is not store:
            await other_store.close()
    assert (await Client(worker).get(charge.payload["transaction_id"]))["body"]["status"] == "captured"
    assert sandbox.ledger.count() == 1


async def test_a_provider_outage_is_503_and_a_retry_with_the_key_finishes(store, settings, tmp_path: Path) -> None:
    ledger = tmp_path / "outage.db"
    failing = SandboxProvider(ledger, SandboxSettings(failure_rate=1.0))
    client = Client(TransactionsWorker(store, {"sandbox": failing}, settings))
    reply = await client.send("charge", VISA, key="outage")
    assert (reply["status"], error_of(reply)["type"]) == (503, "provider_unavailable")
    assert "Retry-After" in reply["headers"]
    transaction_id = error_of(reply)["transaction_id"]
    assert (await client.get(transaction_id))["body"]["status"] == "pending"
    await failing.close()
    healthy = SandboxProvider(ledger)
    try:
        client.worker = TransactionsWorker(store, {"sandbox": healthy}, settings)
        retried = await client.send("charge", VISA, key="outage")  # not a redelivery: the 503 left it idle
        assert (retried["status"], retried["body"]["status"]) == (201, "captured")
        assert healthy.ledger.count() == 1
    finally:
        await healthy.close()


async def test_a_keyed_refund_after_a_503_is_retried_not_replayed(store, settings, tmp_path: Path) -> None:
    ledger = tmp_path / "outage.db"
    healthy = SandboxProvider(ledger)
    client = Client(TransactionsWorker(store, {"sandbox": healthy}, settings))
    transaction_id = await client.approved("charge")
    await healthy.close()
    failing = SandboxProvider(ledger, SandboxSettings(failure_rate=1.0, failure_after_commit=True))
    no_retry = settings.model_copy(update={"provider_retry_attempts": 1})  # the lost reply must surface as a 503
    client.worker = TransactionsWorker(store, {"sandbox": failing}, no_retry)
    body = {"transaction_id": transaction_id, "amount": 400}
    assert (await client.send("refund", body, key="refund-outage"))["status"] == 503
    await failing.close()
    recovered = SandboxProvider(ledger)
    try:
        client.worker = TransactionsWorker(store, {"sandbox": recovered}, settings)
        retried = await client.send("refund", body, key="refund-outage")
        assert (retried["status"], retried["body"]["amount_refunded"]) == (200, 400)
        assert len([entry for entry in recovered.ledger.entries() if entry.operation == "refund"]) == 1
    finally:
        await recovered.close()
