"""Charges, authorizations, captures, refunds and voids cut short at each of their crash windows, on each provider,
then carried on by whoever finds them: the redelivery of the same message to a restarted worker, or the restarted
worker's recovery sweep.

The windows: after the `…Requested` is appended and before the provider is called; after the provider answered and
before its outcome is appended; after the outcome is appended and before the reply is kept under the
Idempotency-Key (a charge's reply is its transaction's stream) and the message acknowledged; for a capture, refund or
void, after the reply is kept and before the acknowledgement.
The crash is an exception raised at the production code's fault point (`faults.hook`): nothing after it runs, the
message is not acknowledged. The restarted worker is a new composition on the same SQLite event store, with adapters
that know nothing of the first attempt, as a new process's would.

Each provider is its test peer over real HTTP where it has one: the sandbox's ledger (SQLite), the Stripe wire-format
server (idempotency keys as Stripe keeps them), the Authorize.net test server (no idempotency key: transactions as
Authorize.net records them). Each test checks the peer's own records (the operation made exactly once), the
transaction (as the provider has it, one outcome in its audit trail) and the client's retry with its key (the same
answer, replayed)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pytest
from payments_shared import faults, ids
from payments_shared.broker.port import Message
from payments_shared.eventstore.port import EventStore
from payments_shared.messages import Command
from payments_shared.providers import stripe as stripe_adapter
from payments_shared.providers.authnet.messages import reference_for
from payments_shared.providers.authnet.provider import AuthorizeNetProvider
from payments_shared.providers.port import PaymentProvider
from payments_shared.providers.registry import close_providers, with_resilience
from payments_shared.providers.sandbox import SandboxProvider
from payments_shared.providers.stripe import StripeProvider
from payments_shared.providers.stripe_redrive import OPERATION_TAG
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker
from payments_webhook_ingest.forwarding import apply_command

from tests.authnet_server import fixture
from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer, running_server
from tests.support.stripe_redrive_worker import A_DAY_AND_MORE, read
from tests.support.stripe_wire_server import WIRE_API_KEY, StripeWireServer, running_stripe_wire

WORKSPACE: Final = "ws_crash"
ROUTES: Final = {kind: f"POST /api/v1/payments/{kind}" for kind in ("charge", "authorize", "capture", "refund", "void")}
AMOUNT: Final = 1000
PART: Final = 400  # a capture or refund of part of the payment: a second one would still be allowed, and show
OUTCOME_EVENT: Final = {"capture": "CaptureSucceeded", "refund": "RefundSucceeded", "void": "VoidSucceeded"}
REQUEST_EVENT: Final = {"capture": "CaptureRequested", "refund": "RefundRequested", "void": "VoidRequested"}
IN_FLIGHT_WINDOW_S: Final = 0.2
FINAL_STATUS: Final = {"capture": "captured", "refund": "partially_refunded", "void": "voided"}

# (fault point, window): the first reached before the provider call, the second after it, the last two after the
# outcome was recorded (before the reply is kept; before the message is acknowledged).
WINDOWS: Final = [
    pytest.param("after_{kind}_requested", id="a-requested"),
    pytest.param("after_provider_call", id="b-provider-answered"),
    pytest.param("after_outcome_recorded", id="c-outcome-recorded"),
    pytest.param("after_response_recorded", id="c-reply-kept"),
]


class SimulatedCrash(BaseException):
    """Raised at a fault point: a BaseException, so that no `except Exception` on the way out can act on it."""


def crash() -> None:
    raise SimulatedCrash


# ---- the providers' test peers ---------------------------------------------------------------------------------


@dataclass
class Peer:
    """One provider: how a worker process reaches it, and what it holds of a payment's operations."""

    name: str
    adapter: Callable[[], PaymentProvider]  # a new adapter, as a new process builds it
    payment_method: Callable[[], Any]
    made: Callable[[str, dict[str, Any]], int]  # how many times the provider made (kind) on this transaction
    # The payments the provider holds (each test has a peer of its own), and how many of them carry this command id.
    charged: Callable[[str], tuple[int, int]]
    settle: Callable[[], None] = lambda: None  # what makes a charge refundable (Authorize.net: the nightly batch)
    credentials: dict[str, str] = field(default_factory=dict)  # the worker's settings for this provider
    authnet: AuthnetTestServer | None = None
    opened: list[PaymentProvider] = field(default_factory=list)

    def providers(self) -> dict[str, PaymentProvider]:
        adapter = self.adapter()
        self.opened.append(adapter)
        return {self.name: adapter}


def sandbox_peer(data_dir: Path) -> Peer:
    ledger_path = data_dir / "sandbox.db"

    def made(kind: str, transaction: dict[str, Any]) -> int:
        reader = SandboxProvider(ledger_path)
        try:
            entries = reader.ledger.entries()
        finally:
            reader.ledger.close()
        return sum(
            entry.operation == kind and entry.payment_reference == transaction["provider_reference"]
            for entry in entries
        )

    def charged(command_id: str) -> tuple[int, int]:
        reader = SandboxProvider(ledger_path)
        try:
            payments = [entry for entry in reader.ledger.entries() if entry.operation == "pay"]
        finally:
            reader.ledger.close()
        return len(payments), sum(entry.idempotency_key == command_id for entry in payments)

    return Peer("sandbox", lambda: SandboxProvider(ledger_path), lambda: "pm_card_visa", made, charged)


def stripe_peer(wire: StripeWireServer) -> Peer:
    """Stripe executes a request once per idempotency key (a repeat replays its first answer): the operations it
    made are its Refunds, and the distinct keys its captures and cancels were executed under."""

    def made(kind: str, transaction: dict[str, Any]) -> int:
        intent = transaction["provider_reference"]
        if kind == "refund":
            return sum(refund["payment_intent"] == intent for refund in wire.refunds.values())
        path = f"/v1/payment_intents/{intent}/{'capture' if kind == 'capture' else 'cancel'}"
        keys = {r.headers.get("Idempotency-Key") for r in wire.requests if r.method == "POST" and r.path == path}
        return len(keys)

    def adapter() -> PaymentProvider:
        return StripeProvider(WIRE_API_KEY, api_base=wire.base_url, timeout_s=fixture.CLIENT_TIMEOUT_S)

    def charged(command_id: str) -> tuple[int, int]:
        intents = wire.payment_intents.values()
        return len(intents), sum(intent["metadata"].get(OPERATION_TAG) == command_id for intent in intents)

    credentials = {"stripe_api_key": WIRE_API_KEY}
    return Peer("stripe", adapter, lambda: "pm_card_visa", made, charged, credentials=credentials)


PAYMENT_KINDS: Final = ("authCaptureTransaction", "authOnlyTransaction")


def authnet_peer(server: AuthnetTestServer) -> Peer:
    """Authorize.net has no idempotency key: a refund is a new transaction each time it is made; a capture or void
    changes the original (a second one is answered "already captured/voided")."""

    def made(kind: str, transaction: dict[str, Any]) -> int:
        original = server.state.transactions[transaction["provider_reference"]]
        if kind == "refund":
            refunds = server.state.transactions.values()
            return sum(t.kind == "refundTransaction" and t.ref_trans_id == original.trans_id for t in refunds)
        if kind == "capture":
            return int(original.status in ("capturedPendingSettlement", "settledSuccessfully"))
        return int(original.status == "voided")

    def adapter() -> PaymentProvider:
        return AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, server.url, timeout_s=fixture.CLIENT_TIMEOUT_S)

    def opaque_token() -> dict[str, str]:
        return {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": f"tok-{uuid.uuid4().hex[:12]}"}

    def charged(command_id: str) -> tuple[int, int]:
        payments = [t for t in server.state.transactions.values() if t.kind in PAYMENT_KINDS]
        return len(payments), sum(t.invoice_number == reference_for(command_id) for t in payments)

    credentials = {"authnet_api_login_id": LOGIN_ID, "authnet_transaction_key": TRANSACTION_KEY}
    return Peer("authnet", adapter, opaque_token, made, charged, server.state.settle, credentials, server)


@pytest.fixture(params=["sandbox", "stripe", "authnet"])
async def peer(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Peer]:
    with contextlib.ExitStack() as running:
        if request.param == "sandbox":
            chosen = sandbox_peer(tmp_path)
        elif request.param == "stripe":
            chosen = stripe_peer(running.enter_context(running_stripe_wire(WIRE_API_KEY)))
        else:
            chosen = authnet_peer(running.enter_context(running_server(stall_s=fixture.CLIENT_TIMEOUT_S * 4)))
        yield chosen
        for adapter in chosen.opened:
            await close_providers({chosen.name: adapter})


# ---- a worker process and its client ---------------------------------------------------------------------------


def worker_process(store: EventStore, peer: Peer, data_dir: Path) -> TransactionsWorker:
    """One process's composition, as `payments_transactions.main` builds it: its providers behind the resilience
    wrapper, with a short in-flight window (a client's retry takes over what the dead process left once it passed)."""
    settings = TransactionsSettings.model_validate(
        {
            "data_dir": data_dir,
            "payments_default_provider": peer.name,
            "in_flight_window_s": IN_FLIGHT_WINDOW_S,
            "provider_timeout_s": fixture.CLIENT_TIMEOUT_S,
            **peer.credentials,
        }
    )
    return TransactionsWorker(store, with_resilience(peer.providers(), settings), settings)


def command(kind: str, body: dict[str, Any], key: str) -> Command:
    command_id = ids.command_id(WORKSPACE, key)
    payload = dict(body)
    if kind in ("charge", "authorize"):
        payload["transaction_id"] = ids.derived_id("txn", command_id)
    return Command(
        type=kind,
        workspace=WORKSPACE,
        actor="user_1",
        command_id=command_id,
        payload=payload,
        idempotency_key=key,
        fingerprint=ids.fingerprint(ROUTES[kind], body),
    )


def delivery(sent: Command, message_id: str, redelivered: bool = False) -> Message:
    return Message(
        body=sent.model_dump(),
        message_id=message_id,
        correlation_id=f"req-{uuid.uuid4().hex[:8]}",
        redelivered=redelivered,
        delivery_count=2 if redelivered else 1,
    )


async def carried_on(
    restarted: TransactionsWorker, sent: Command, by: str, still_open: bool = True
) -> Mapping[str, Any] | None:
    """The dead attempt carried on: by its message's redelivery (its reply), or by the recovery sweep, which finds it
    among the open operations unless its outcome was recorded (embedded mode's in-memory queue lost the message)."""
    if by == "redelivery":
        return await restarted.handle(delivery(sent, "msg-1", redelivered=True))
    assert await restarted.recover(min_age_s=0) == int(still_open)
    return None


async def event_types(worker: TransactionsWorker, transaction_id: str) -> list[str]:
    return [
        event["type"] for event in (await read(worker, "get_transaction_events", transaction_id, WORKSPACE))["data"]
    ]


async def paid(worker: TransactionsWorker, peer: Peer, kind: str) -> dict[str, Any]:
    """The payment the follow-up acts on: authorized for a capture or void, charged (and settled) for a refund."""
    body = {"amount": AMOUNT, "currency": "usd", "payment_method": peer.payment_method(), "provider": peer.name}
    route = "charge" if kind == "refund" else "authorize"
    reply = await worker.handle(delivery(command(route, body, f"pay-{uuid.uuid4().hex}"), str(uuid.uuid4())))
    assert reply["status"] == 201, reply
    assert reply["body"]["status"] == ("captured" if kind == "refund" else "authorized"), reply
    peer.settle()
    transaction: dict[str, Any] = reply["body"]
    return transaction


def follow_up(kind: str, transaction_id: str) -> Command:
    body: dict[str, Any] = {"transaction_id": transaction_id}
    if kind in ("capture", "refund"):
        body["amount"] = PART
    return command(kind, body, f"{kind}-{uuid.uuid4().hex}")


def assert_final(kind: str, transaction: dict[str, Any]) -> None:
    assert transaction["status"] == FINAL_STATUS[kind], transaction
    if kind == "capture":
        assert transaction["amount_captured"] == PART
    if kind == "refund":
        assert transaction["amount_refunded"] == PART
        assert [(r["amount"], r["status"]) for r in transaction["refunds"]] == [(PART, "succeeded")]


def assert_at_the_provider(peer: Peer, kind: str, transaction: dict[str, Any]) -> None:
    assert peer.made(kind, transaction) == 1
    if peer.authnet is not None and kind == "capture":
        original = peer.authnet.state.transactions[transaction["provider_reference"]]
        assert original.settle_amount == Decimal(PART) / 100


# ---- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["capture", "refund", "void"])
@pytest.mark.parametrize("point", WINDOWS)
@pytest.mark.parametrize("carried_on_by", ["redelivery", "recovery"])
async def test_a_follow_up_cut_short_in_any_window_is_made_once_and_recorded_as_made(
    store: EventStore,
    peer: Peer,
    tmp_path: Path,
    kind: str,
    point: str,
    carried_on_by: str,
) -> None:
    first = worker_process(store, peer, tmp_path)
    payment = await paid(first, peer, kind)
    transaction_id = payment["id"]
    sent = follow_up(kind, transaction_id)

    with faults.hook(point.format(kind=kind), crash), pytest.raises(SimulatedCrash):
        await first.handle(delivery(sent, "msg-1"))
    recorded = await event_types(first, transaction_id)
    assert REQUEST_EVENT[kind] in recorded
    provider_called = point != "after_{kind}_requested"
    assert peer.made(kind, payment) == int(provider_called)
    assert (OUTCOME_EVENT[kind] in recorded) == (point in ("after_outcome_recorded", "after_response_recorded"))

    restarted = worker_process(store, peer, tmp_path)
    outcome_recorded = OUTCOME_EVENT[kind] in recorded
    reply = await carried_on(restarted, sent, carried_on_by, still_open=not outcome_recorded)
    if reply is not None:
        assert reply["status"] == 200, reply
        assert_final(kind, reply["body"])

    transaction = await read(restarted, "get_transaction", transaction_id, WORKSPACE)
    assert_final(kind, transaction)
    assert_at_the_provider(peer, kind, transaction)
    assert (await event_types(restarted, transaction_id)).count(OUTCOME_EVENT[kind]) == 1
    assert "ProviderCallFailed" not in await event_types(restarted, transaction_id)

    await asyncio.sleep(IN_FLIGHT_WINDOW_S * 1.5)  # the dead attempt's claim of the key is past the window
    retried = await restarted.handle(delivery(sent, "msg-2"))  # the client's retry with its key
    assert retried["status"] == 200, retried
    assert retried["body"] == transaction
    again = await restarted.handle(delivery(sent, "msg-3"))
    assert again["body"] == retried["body"]
    assert again["headers"].get("Idempotent-Replayed") == "true"
    assert_at_the_provider(peer, kind, transaction)


CHARGE_WINDOWS: Final = [
    pytest.param("after_transaction_requested", id="a-requested"),
    pytest.param("after_provider_call", id="b-provider-answered"),
    pytest.param("after_outcome_recorded", id="c-outcome-recorded"),
]
PAYMENT_OUTCOME: Final = {"charge": "PaymentCaptured", "authorize": "PaymentAuthorized"}
PAYMENT_STATUS: Final = {"charge": "captured", "authorize": "authorized"}


@pytest.mark.parametrize("kind", ["charge", "authorize"])
@pytest.mark.parametrize("point", CHARGE_WINDOWS)
@pytest.mark.parametrize("carried_on_by", ["redelivery", "recovery"])
async def test_a_payment_cut_short_in_any_window_is_made_once_and_recorded_as_made(
    store: EventStore, peer: Peer, tmp_path: Path, kind: str, point: str, carried_on_by: str
) -> None:
    body = {"amount": AMOUNT, "currency": "usd", "payment_method": peer.payment_method(), "provider": peer.name}
    sent = command(kind, body, f"{kind}-{uuid.uuid4().hex}")
    transaction_id = sent.payload["transaction_id"]
    first = worker_process(store, peer, tmp_path)

    with faults.hook(point, crash), pytest.raises(SimulatedCrash):
        await first.handle(delivery(sent, "msg-1"))
    made = int(point != "after_transaction_requested")
    assert peer.charged(sent.command_id) == (made, made)
    outcome_recorded = PAYMENT_OUTCOME[kind] in await event_types(first, transaction_id)
    assert outcome_recorded == (point == "after_outcome_recorded")

    restarted = worker_process(store, peer, tmp_path)
    reply = await carried_on(restarted, sent, carried_on_by, still_open=not outcome_recorded)
    if reply is not None:
        assert (reply["status"], reply["body"]["status"]) == (201, PAYMENT_STATUS[kind]), reply
    unsendable = peer.name == "authnet" and carried_on_by == "recovery" and point == "after_transaction_requested"
    transaction = await read(restarted, "get_transaction", transaction_id, WORKSPACE)
    if unsendable:
        # The Accept.js token is never stored: recovery can only look the payment up, finds none yet, and leaves
        # it pending (looked up again shortly). The client's retry, which carries the token, makes it.
        assert transaction["status"] == "pending"
        assert peer.charged(sent.command_id) == (0, 0)
    else:
        assert transaction["status"] == PAYMENT_STATUS[kind], transaction
        assert peer.charged(sent.command_id) == (1, 1)
        assert "ProviderCallFailed" not in await event_types(restarted, transaction_id)

    await asyncio.sleep(IN_FLIGHT_WINDOW_S * 1.5)  # the dead attempt is past the window: a client's retry takes over
    retried = await restarted.handle(delivery(sent, "msg-2"))  # the client's retry with its key
    assert (retried["status"], retried["body"]["status"]) == (201, PAYMENT_STATUS[kind]), retried
    again = await restarted.handle(delivery(sent, "msg-3"))
    assert (again["body"], again["headers"].get("Idempotent-Replayed")) == (retried["body"], "true")
    assert peer.charged(sent.command_id) == (1, 1)
    assert (await event_types(restarted, transaction_id)).count(PAYMENT_OUTCOME[kind]) == 1
    amount_field = "amount_captured" if kind == "charge" else "amount_authorized"
    assert retried["body"][amount_field] == AMOUNT


@pytest.mark.parametrize("kind", ["charge", "authorize", "capture", "refund", "void"])
@pytest.mark.parametrize("carried_on_by", ["redelivery", "recovery"])
async def test_on_stripe_an_operation_cut_short_after_its_answer_and_carried_on_a_day_later_is_made_once(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, carried_on_by: str
) -> None:
    """Killed between Stripe's answer and its outcome's append, carried on after Stripe has forgotten the key
    (24 hours: a dead letter requeued the next day, a system down for a day): the re-drive finds what the first
    attempt made (by its tag, or the PaymentIntent's state) instead of making it again."""
    with running_stripe_wire(WIRE_API_KEY) as wire:
        peer = stripe_peer(wire)
        try:
            first = worker_process(store, peer, tmp_path)
            if kind in ("charge", "authorize"):
                body = {"amount": AMOUNT, "currency": "usd", "payment_method": "pm_card_visa", "provider": "stripe"}
                sent = command(kind, body, f"{kind}-{uuid.uuid4().hex}")
                transaction_id = str(sent.payload["transaction_id"])
            else:
                payment = await paid(first, peer, kind)
                transaction_id = payment["id"]
                sent = follow_up(kind, transaction_id)
            with faults.hook("after_provider_call", crash), pytest.raises(SimulatedCrash):
                await first.handle(delivery(sent, "msg-1"))

            wire.advance(A_DAY_AND_MORE.total_seconds())  # Stripe forgets the key
            monkeypatch.setattr(stripe_adapter, "_utc_now", lambda: datetime.now(UTC) + A_DAY_AND_MORE)
            restarted = worker_process(store, peer, tmp_path)
            reply = await carried_on(restarted, sent, carried_on_by)
            assert reply is None or reply["status"] in (200, 201), reply
            transaction = await read(restarted, "get_transaction", transaction_id, WORKSPACE)
            types = await event_types(restarted, transaction_id)
            asked = {f"{r.method} {r.path}" for r in wire.requests}
            intent = wire.payment_intents[transaction["provider_reference"]]
        finally:
            for adapter in peer.opened:
                await close_providers({peer.name: adapter})
    if kind in ("charge", "authorize"):
        assert transaction["status"] == PAYMENT_STATUS[kind], transaction
        assert peer.charged(sent.command_id) == (1, 1)
        assert types.count(PAYMENT_OUTCOME[kind]) == 1
    else:
        assert_final(kind, transaction)
        assert peer.charged(payment["id"]) == (1, 0)  # the payment's own intent, and no other
        assert types.count(OUTCOME_EVENT[kind]) == 1
    if kind in ("charge", "authorize"):
        assert "GET /v1/payment_intents/search" in asked  # the forgotten key's look-up ran
    if kind == "refund":
        assert peer.made(kind, transaction) == 1
        assert "GET /v1/refunds" in asked
    if kind == "capture":
        assert (intent["status"], intent["amount_received"]) == ("succeeded", PART)
    if kind == "void":
        assert intent["status"] == "canceled"
    assert "ProviderCallFailed" not in types


@pytest.mark.parametrize("carried_on_by", ["redelivery", "recovery"])
async def test_on_authnet_a_whole_refund_made_by_a_void_cut_short_after_the_void_is_recorded_once(
    store: EventStore, tmp_path: Path, carried_on_by: str
) -> None:
    """Authorize.net refunds only settled charges: the whole amount of an unsettled one is refunded by voiding it.
    Killed after the void and before the refund's outcome is appended, the re-drive finds no refund transaction
    (there is none), is refused the refund again, voids again (answered "already voided") and records the refund."""
    with running_server(stall_s=fixture.CLIENT_TIMEOUT_S * 4) as server:
        peer = authnet_peer(server)
        try:
            first = worker_process(store, peer, tmp_path)
            body = {"amount": AMOUNT, "currency": "usd", "payment_method": peer.payment_method(), "provider": "authnet"}
            charged = await first.handle(delivery(command("charge", body, f"charge-{uuid.uuid4().hex}"), "msg-0"))
            assert charged["status"] == 201, charged
            transaction_id = charged["body"]["id"]
            sent = command("refund", {"transaction_id": transaction_id}, f"refund-{uuid.uuid4().hex}")
            with faults.hook("after_provider_call", crash), pytest.raises(SimulatedCrash):
                await first.handle(delivery(sent, "msg-1"))
            original = server.state.transactions[charged["body"]["provider_reference"]]
            assert original.status == "voided"

            restarted = worker_process(store, peer, tmp_path)
            reply = await carried_on(restarted, sent, carried_on_by)
            assert reply is None or reply["status"] == 200, reply
            transaction = await read(restarted, "get_transaction", transaction_id, WORKSPACE)
            types = await event_types(restarted, transaction_id)
            refund_transactions = [t for t in server.state.transactions.values() if t.kind == "refundTransaction"]
        finally:
            for adapter in peer.opened:
                await close_providers({peer.name: adapter})
    assert (transaction["status"], transaction["amount_refunded"]) == ("refunded", AMOUNT), transaction
    assert types.count("RefundSucceeded") == 1
    assert "ProviderCallFailed" not in types
    assert refund_transactions == []
    assert original.status == "voided"


def stripe_event(event_type: str, stripe_object: dict[str, Any]) -> Message:
    """A verified Stripe event as webhook-ingest hands it to the transactions worker."""
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    payload: dict[str, Any] = {
        "provider": "stripe",
        "event_id": event_id,
        "event_type": event_type,
        "object_id": stripe_object["id"],
        "object_type": stripe_object["object"],
        "provider_created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "webhook_stream": f"webhook-stripe-{event_id}",
        "object": stripe_object,
    }
    command = Command(
        type="apply_provider_event", workspace="", actor="webhook:stripe", command_id=str(uuid.uuid4()), payload=payload
    )
    return Message(body=command.model_dump(), message_id=str(uuid.uuid4()))


@pytest.mark.parametrize("carried_on_by", ["redelivery", "recovery"])
async def test_on_stripe_a_refund_cut_short_after_its_answer_and_reported_by_its_webhook_first_counts_once(
    store: EventStore, tmp_path: Path, carried_on_by: str
) -> None:
    """Our refund killed after Stripe made it and before its outcome was appended; Stripe's `charge.refunded` for
    it arrives before the refund is carried on. The report names a refund not known here while ours is under way:
    noted, then decided by our refund's outcome, which turns out to be that refund. Counted once, not twice."""
    with running_stripe_wire(WIRE_API_KEY) as wire:
        peer = stripe_peer(wire)
        try:
            first = worker_process(store, peer, tmp_path)
            payment = await paid(first, peer, "refund")
            sent = follow_up("refund", payment["id"])
            with faults.hook("after_provider_call", crash), pytest.raises(SimulatedCrash):
                await first.handle(delivery(sent, "msg-1"))
            [refund] = wire.refunds.values()
            intent = wire.payment_intents[payment["provider_reference"]]
            charge = {
                "id": intent["latest_charge"],
                "object": "charge",
                "payment_intent": intent["id"],
                "amount": AMOUNT,
                "amount_refunded": PART,
                "refunds": {"object": "list", "data": [refund], "has_more": False},
            }
            restarted = worker_process(store, peer, tmp_path)
            reported = await restarted.handle(stripe_event("charge.refunded", charge))
            assert reported["status"] == 200, reported

            reply = await carried_on(restarted, sent, carried_on_by)
            assert reply is None or reply["status"] == 200, reply
            transaction = await read(restarted, "get_transaction", payment["id"], WORKSPACE)
            types = await event_types(restarted, payment["id"])
        finally:
            for adapter in peer.opened:
                await close_providers({peer.name: adapter})
    assert_refunded_once_though_reported_meanwhile(transaction, types)
    assert len(wire.refunds) == 1


def assert_refunded_once_though_reported_meanwhile(transaction: dict[str, Any], types: list[str]) -> None:
    """Our refund counts once: the provider's report of it, applied while ours was under way, is only noted."""
    assert (transaction["status"], transaction["amount_refunded"]) == ("partially_refunded", PART), transaction
    assert [(r["amount"], r["status"]) for r in transaction["refunds"]] == [(PART, "succeeded")]
    assert types.count("RefundSucceeded") == 1
    assert "ProviderRefundReportNoted" in types
    assert "ProviderRefunded" not in types


def authnet_notification(event_type: str, trans_id: str, amount: int) -> Message:
    """A verified Authorize.net notification as webhook-ingest hands it to the transactions worker."""
    event_id = str(uuid.uuid4())
    payload = {"responseCode": 1, "authAmount": amount / 100, "entityName": "transaction", "id": trans_id}
    received = {
        "provider": "authnet",
        "event_id": event_id,
        "event_type": f"net.authorize.payment.{event_type}",
        "object_id": trans_id,
        "object_type": "transaction",
        "provider_created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "payload": {"notificationId": event_id, "eventType": f"net.authorize.payment.{event_type}", "payload": payload},
    }
    return Message(body=apply_command(received).model_dump(), message_id=str(uuid.uuid4()))


@pytest.mark.parametrize("carried_on_by", ["redelivery", "recovery"])
async def test_on_authnet_a_refund_cut_short_after_its_answer_and_notified_first_counts_once(
    store: EventStore, tmp_path: Path, carried_on_by: str
) -> None:
    """As on Stripe: our refund killed after Authorize.net made it, its `refund.created` notification applied before
    the refund is carried on. It names our refund's transId: it does not count a second time."""
    with running_server(stall_s=fixture.CLIENT_TIMEOUT_S * 4) as server:
        peer = authnet_peer(server)
        try:
            first = worker_process(store, peer, tmp_path)
            payment = await paid(first, peer, "refund")
            sent = follow_up("refund", payment["id"])
            with faults.hook("after_provider_call", crash), pytest.raises(SimulatedCrash):
                await first.handle(delivery(sent, "msg-1"))
            [refund] = [t for t in server.state.transactions.values() if t.kind == "refundTransaction"]
            restarted = worker_process(store, peer, tmp_path)
            notified = await restarted.handle(authnet_notification("refund.created", refund.trans_id, PART))
            assert notified["status"] == 200, notified

            reply = await carried_on(restarted, sent, carried_on_by)
            assert reply is None or reply["status"] == 200, reply
            transaction = await read(restarted, "get_transaction", payment["id"], WORKSPACE)
            types = await event_types(restarted, payment["id"])
        finally:
            for adapter in peer.opened:
                await close_providers({peer.name: adapter})
    assert_refunded_once_though_reported_meanwhile(transaction, types)
    assert peer.made("refund", transaction) == 1
