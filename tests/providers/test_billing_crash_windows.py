"""Customers and subscriptions (create, update, delete; create, update, cancel) cut short at each of their crash
windows, on each provider, then carried on by the redelivery of the same message to a restarted billing worker or by
the restarted worker's recovery.

The windows: after the command is journaled (and, for an update or cancel, its request appended) and before the
provider is called; after the provider answered and before its outcome is appended; after the outcome is appended
and before the reply is kept under the Idempotency-Key. The crash is an exception raised at the production code's
fault point (`faults.hook`); the restarted worker is a new composition on the same SQLite event store, with adapters
that know nothing of the first attempt.

Each provider is its test peer: the sandbox's ledger, the Stripe wire-format server, the Authorize.net test server.
Each test checks the peer's own records (one customer, one subscription made; the change applied there), the
object as recorded (as the provider has it, one outcome event) and the client's retry with its key (replayed)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from payments_billing import customer_commands, serialized, subscription_commands
from payments_billing.main import build_worker
from payments_billing.settings import BillingSettings
from payments_billing.worker import AFTER_ACCEPTED, BEFORE_RECORD, BillingWorker
from payments_shared import faults, ids
from payments_shared.broker.port import Message
from payments_shared.eventstore.port import EventStore
from payments_shared.messages import Command
from payments_shared.providers.authnet.provider import AuthorizeNetProvider
from payments_shared.providers.port import CustomerRequest, OpaqueData, Outcome
from payments_shared.providers.registry import close_providers
from payments_shared.providers.sandbox import SandboxProvider
from payments_shared.providers.stripe import StripeProvider

from tests.authnet_server import fixture
from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer, running_server
from tests.support.stripe_wire_server import WIRE_API_KEY, StripeWireServer, running_stripe_wire

WORKSPACE: Final = "ws_billing_crash"
IN_FLIGHT_WINDOW_S: Final = 0.2
MONTHLY: Final = 1500
PLAN: Final[dict[str, Any]] = {"amount": MONTHLY, "currency": "usd", "interval": "month", "interval_count": 1}
NEW_EMAIL: Final = "changed@example.com"
NEW_QUANTITY: Final = 2

# Each command's windows, by the fault point production code reaches there.
WINDOWS: Final = {
    "create_customer": [AFTER_ACCEPTED, customer_commands.AFTER_CUSTOMER_CALL, BEFORE_RECORD],
    "update_customer": [serialized.AFTER_CHANGE_REQUESTED, serialized.AFTER_CHANGE_CALL, BEFORE_RECORD],
    "delete_customer": [
        customer_commands.AFTER_SUBSCRIPTIONS_CANCELED,
        customer_commands.AFTER_DELETE_CALL,
        BEFORE_RECORD,
    ],
    "create_subscription": [
        AFTER_ACCEPTED,
        subscription_commands.AFTER_SUBSCRIPTION_CALL,
        subscription_commands.AFTER_SUBSCRIPTION_RECORDED,
        BEFORE_RECORD,
    ],
    "update_subscription": [serialized.AFTER_CHANGE_REQUESTED, serialized.AFTER_CHANGE_CALL, BEFORE_RECORD],
    "cancel_subscription": [
        serialized.AFTER_CHANGE_REQUESTED,
        subscription_commands.AFTER_CANCEL_CALL,
        serialized.AFTER_CHANGE_CALL,
        BEFORE_RECORD,
    ],
}
CASES: Final = [pytest.param(kind, point, id=f"{kind}-{point}") for kind, points in WINDOWS.items() for point in points]
OUTCOME_EVENT: Final = {
    "create_customer": "CustomerCreated",
    "update_customer": "CustomerUpdated",
    "delete_customer": "CustomerDeleted",
    "create_subscription": "SubscriptionCreated",
    "update_subscription": "SubscriptionUpdated",
    "cancel_subscription": "SubscriptionCanceled",
}


class SimulatedCrash(BaseException):
    """Raised at a fault point: a BaseException, so that no `except Exception` on the way out can act on it."""


def crash() -> None:
    raise SimulatedCrash


# ---- the providers' test peers ---------------------------------------------------------------------------------


@dataclass
class Peer:
    """One provider and what it holds: its customers (reference → email, None once deleted) and subscriptions
    (reference → (status, what a period bills)), every one it ever made."""

    name: str
    adapter: Callable[[], Any]
    payment_method: Callable[[], Any]
    customers: Callable[[], dict[str, str | None]]
    subscriptions: Callable[[], dict[str, tuple[str, int]]]
    calls: Callable[[str], int] = lambda _operation: 1  # the sandbox: how many times it did `operation`
    credentials: dict[str, str] = field(default_factory=dict)
    opened: list[Any] = field(default_factory=list)

    def providers(self) -> dict[str, Any]:
        adapter = self.adapter()
        self.opened.append(adapter)
        return {self.name: adapter}


def sandbox_peer(data_dir: Path) -> Peer:
    ledger_path = data_dir / "sandbox.db"

    def entries() -> list[Any]:
        reader = SandboxProvider(ledger_path)
        try:
            return reader.ledger.entries()
        finally:
            reader.ledger.close()

    def customers() -> dict[str, str | None]:
        rows = entries()
        deleted = {row.payment_reference for row in rows if row.operation == "delete_customer"}
        made = [row.reference for row in rows if row.operation == "create_customer"]
        return {reference: (None if reference in deleted else "?") for reference in made}

    def subscriptions() -> dict[str, tuple[str, int]]:
        rows = entries()
        canceled = {row.payment_reference for row in rows if row.operation == "cancel_subscription"}
        made = [row.reference for row in rows if row.operation == "create_subscription"]
        return {reference: ("canceled" if reference in canceled else "active", 0) for reference in made}

    def calls(operation: str) -> int:
        return sum(row.operation == operation for row in entries())

    return Peer(
        "sandbox", lambda: SandboxProvider(ledger_path), lambda: "pm_card_visa", customers, subscriptions, calls
    )


def stripe_peer(wire: StripeWireServer) -> Peer:
    deleted: dict[str, str | None] = {}

    def customers() -> dict[str, str | None]:
        for request in wire.requests:  # the wire server forgets a deleted customer: what was deleted, from its log
            parts = request.path.strip("/").split("/")
            if request.method == "DELETE" and parts[:2] == ["v1", "customers"] and parts[2] not in wire.customers:
                deleted[parts[2]] = None
        return {**{ref: customer["email"] for ref, customer in wire.customers.items()}, **deleted}

    def subscriptions() -> dict[str, tuple[str, int]]:
        return {
            ref: (sub["status"], sub["items"]["data"][0]["plan"]["amount"] * sub["items"]["data"][0]["quantity"])
            for ref, sub in wire.subscriptions.items()
        }

    def adapter() -> Any:
        return StripeProvider(WIRE_API_KEY, api_base=wire.base_url, timeout_s=fixture.CLIENT_TIMEOUT_S)

    credentials = {"stripe_api_key": WIRE_API_KEY}
    return Peer("stripe", adapter, lambda: "pm_card_visa", customers, subscriptions, credentials=credentials)


def authnet_peer(server: AuthnetTestServer) -> Peer:
    made: dict[str, str | None] = {}

    def customers() -> dict[str, str | None]:
        for ref in made:
            if ref not in server.state.profiles:
                made[ref] = None
        made.update({ref: profile.email for ref, profile in server.state.profiles.items()})
        return dict(made)

    def subscriptions() -> dict[str, tuple[str, int]]:
        return {ref: (sub.status, int(sub.amount * 100)) for ref, sub in server.state.subscriptions.items()}

    def adapter() -> Any:
        return AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, server.url, timeout_s=fixture.CLIENT_TIMEOUT_S)

    def opaque_token() -> dict[str, str]:
        return {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": f"tok-{uuid.uuid4().hex[:12]}"}

    credentials = {"authnet_api_login_id": LOGIN_ID, "authnet_transaction_key": TRANSACTION_KEY}
    return Peer("authnet", adapter, opaque_token, customers, subscriptions, credentials=credentials)


# authnet-tokens-first: Authorize.net refusing a spent Accept.js token before it finds the duplicate profile (which of
# the two it checks first is not published).
@pytest.fixture(params=["sandbox", "stripe", "authnet", "authnet-tokens-first"])
async def peer(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Peer]:
    with contextlib.ExitStack() as running:
        if request.param == "sandbox":
            chosen = sandbox_peer(tmp_path)
        elif request.param == "stripe":
            chosen = stripe_peer(running.enter_context(running_stripe_wire(WIRE_API_KEY)))
        else:
            server = running.enter_context(running_server(stall_s=fixture.CLIENT_TIMEOUT_S * 4))
            server.state.tokens_checked_first = request.param == "authnet-tokens-first"
            chosen = authnet_peer(server)
        yield chosen
        for adapter in chosen.opened:
            await close_providers({chosen.name: adapter})


# ---- a worker process and its client ---------------------------------------------------------------------------


def worker_process(store: EventStore, peer: Peer, data_dir: Path) -> BillingWorker:
    """One process's composition, as `payments_billing.main` builds it, with a short in-flight window (a client's
    retry takes over what the dead process left once it passed)."""
    settings = BillingSettings.model_validate(
        {
            "data_dir": data_dir,
            "payments_default_provider": peer.name,
            "in_flight_window_s": IN_FLIGHT_WINDOW_S,
            "provider_timeout_s": fixture.CLIENT_TIMEOUT_S,
            **peer.credentials,
        }
    )
    return build_worker(store, peer.providers(), settings)


def command(kind: str, payload: dict[str, Any], key: str | None = None) -> Command:
    key = key or f"{kind}-{uuid.uuid4().hex}"
    command_id = ids.command_id(WORKSPACE, key)
    if kind == "create_customer":
        payload = {"customer_id": ids.derived_id("cus", command_id), **payload}
    if kind == "create_subscription":
        payload = {"subscription_id": ids.derived_id("sub", command_id), **payload}
    return Command(
        type=kind,
        workspace=WORKSPACE,
        actor="user_1",
        command_id=command_id,
        idempotency_key=key,
        fingerprint=ids.fingerprint(kind, payload),
        payload=payload,
    )


def delivery(sent: Command, message_id: str | None = None, redelivered: bool = False) -> Message:
    return Message(body=sent.model_dump(), message_id=message_id or str(uuid.uuid4()), redelivered=redelivered)


async def done(worker: BillingWorker, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    reply = dict(await worker.handle(delivery(command(kind, payload))))
    assert reply["status"] in (200, 201), reply
    body: dict[str, Any] = reply["body"]
    return body


async def stream_types(store: EventStore, stream: str) -> list[str]:
    return [event.type for event in await store.read(stream)]


@dataclass
class Scene:
    """What exists before the command under test: a customer, and a subscription of it (unless it is created)."""

    customer: dict[str, Any]
    subscription: dict[str, Any] | None
    sent: Command

    @property
    def stream(self) -> str:
        if self.sent.type.endswith("customer"):
            return f"customer-{self.sent.payload['customer_id']}"
        return f"subscription-{self.sent.payload['subscription_id']}"


async def scene(worker: BillingWorker, peer: Peer, kind: str) -> Scene:
    if kind == "create_customer":
        body = {"email": "ada@example.com", "payment_method": peer.payment_method(), "provider": peer.name}
        return Scene({}, None, command(kind, body))
    customer = await done(
        worker, "create_customer", {"email": "ada@example.com", "payment_method": peer.payment_method()}
    )
    if kind == "create_subscription":
        return Scene(customer, None, command(kind, {**PLAN, "customer_id": customer["id"]}))
    subscription = await done(worker, "create_subscription", {**PLAN, "customer_id": customer["id"]})
    if kind == "update_customer":
        return Scene(customer, subscription, command(kind, {"customer_id": customer["id"], "email": NEW_EMAIL}))
    if kind == "delete_customer":
        return Scene(customer, subscription, command(kind, {"customer_id": customer["id"]}))
    target = {"subscription_id": subscription["id"]}
    if kind == "update_subscription":
        return Scene(customer, subscription, command(kind, {**target, "quantity": NEW_QUANTITY}))
    return Scene(customer, subscription, command(kind, target))


def check_at_the_provider(peer: Peer, kind: str, answered: dict[str, Any]) -> None:
    """The provider holds what the record says, made once."""
    customers, subscriptions = peer.customers(), peer.subscriptions()
    if kind == "create_customer":
        assert list(customers) == [answered["provider_reference"]]
        assert peer.calls("create_customer") == 1
    elif kind == "update_customer":
        assert len(customers) == 1
        assert customers[answered["provider_reference"]] in (NEW_EMAIL, "?")
        assert peer.calls("update_customer") == 1
    elif kind == "delete_customer":
        assert list(customers.values()) == [None]
        assert [status for status, _ in subscriptions.values()] == ["canceled"]
        assert peer.calls("delete_customer") == 1
    else:
        assert list(subscriptions) == [answered["provider_reference"]]
        status, billed = subscriptions[answered["provider_reference"]]
        assert status == answered["status"]
        assert peer.calls(kind) == 1
        if kind == "update_subscription" and peer.name != "sandbox":
            assert billed == MONTHLY * NEW_QUANTITY


@pytest.mark.parametrize(("kind", "point"), CASES)
@pytest.mark.parametrize("carried_on_by", ["redelivery", "recovery"])
async def test_a_billing_change_cut_short_in_any_window_is_made_once_and_recorded_as_made(
    store: EventStore, peer: Peer, tmp_path: Path, kind: str, point: str, carried_on_by: str
) -> None:
    first = worker_process(store, peer, tmp_path)
    setup = await scene(first, peer, kind)
    before = peer.customers()  # (the Authorize.net peer learns here of a profile the command may delete)
    assert len(before) == (0 if kind == "create_customer" else 1)

    with faults.hook(point, crash), pytest.raises(SimulatedCrash):
        await first.handle(delivery(setup.sent, "msg-1"))

    restarted = worker_process(store, peer, tmp_path)
    if carried_on_by == "redelivery":
        carried_on = dict(await restarted.handle(delivery(setup.sent, "msg-1", redelivered=True)))
    else:  # the message died with its process: the journal's recovery runs it again
        recovered = await restarted.recover(min_age_s=0)
        if not isinstance(setup.sent.payload.get("payment_method"), dict):  # an Accept.js nonce is never journaled:
            assert recovered == 1  # such a command is its client's to send again
        await asyncio.sleep(IN_FLIGHT_WINDOW_S * 1.5)  # the dead attempt's claim of the key is past the window
        carried_on = dict(await restarted.handle(delivery(setup.sent, "msg-2")))  # the client's retry with its key
    assert carried_on["status"] in (200, 201), carried_on

    types = await stream_types(store, setup.stream)
    assert types.count(OUTCOME_EVENT[kind]) == 1, types
    if kind == "delete_customer":
        assert carried_on["body"] == {"id": setup.customer["id"], "object": "customer", "deleted": True}
        check_at_the_provider(peer, kind, {})
    else:
        check_at_the_provider(peer, kind, carried_on["body"])
    if kind == "update_customer":
        assert carried_on["body"]["email"] == NEW_EMAIL
    if kind == "update_subscription":
        assert carried_on["body"]["quantity"] == NEW_QUANTITY
    if kind == "cancel_subscription":
        assert carried_on["body"]["status"] == "canceled"

    await asyncio.sleep(IN_FLIGHT_WINDOW_S * 1.5)
    replayed = dict(await restarted.handle(delivery(setup.sent, "msg-3")))
    assert (replayed["status"], replayed["body"]) == (carried_on["status"], carried_on["body"])
    assert replayed["headers"].get("Idempotent-Replayed") == "true"


@contextlib.asynccontextmanager
async def on_authnet() -> AsyncIterator[tuple[AuthnetTestServer, Peer]]:
    with running_server(stall_s=fixture.CLIENT_TIMEOUT_S * 4) as server:
        peer = authnet_peer(server)
        try:
            yield server, peer
        finally:
            for adapter in peer.opened:
                await close_providers({peer.name: adapter})


@pytest.mark.parametrize("carried_on_by", ["redelivery", "client_retry"])
async def test_on_authnet_a_new_payment_method_added_before_a_crash_is_recorded_by_the_redrive(
    store: EventStore, tmp_path: Path, carried_on_by: str
) -> None:
    """A customer update with a new Accept.js payment method, cut short after Authorize.net added the payment profile
    (createCustomerPaymentProfile) and before the outcome was appended, carried on by the redelivery of its message
    or by the client's retry (both carry the nonce, which the first attempt spent: E00114). The update happened at
    Authorize.net: it is recorded so, with that payment profile as the default, not as failed."""
    async with on_authnet() as (server, peer):
        first = worker_process(store, peer, tmp_path)
        customer = await done(
            first, "create_customer", {"email": "ada@example.com", "payment_method": peer.payment_method()}
        )
        sent = command("update_customer", {"customer_id": customer["id"], "payment_method": peer.payment_method()})
        with faults.hook(serialized.AFTER_CHANGE_CALL, crash), pytest.raises(SimulatedCrash):
            await first.handle(delivery(sent, "msg-1"))
        payment_profiles = server.state.profiles[customer["provider_reference"]].payment_profiles
        assert len(payment_profiles) == 2  # the first attempt added the new one

        restarted = worker_process(store, peer, tmp_path)
        if carried_on_by == "redelivery":
            carried_on = dict(await restarted.handle(delivery(sent, "msg-1", redelivered=True)))
        else:
            await asyncio.sleep(IN_FLIGHT_WINDOW_S * 1.5)
            carried_on = dict(await restarted.handle(delivery(sent, "msg-2")))
    assert carried_on["status"] == 200, carried_on
    newest = max(payment_profiles, key=int)
    assert carried_on["body"]["default_payment_method"] == f"{customer['provider_reference']}/{newest}"
    assert len(payment_profiles) == 2
    assert (await stream_types(store, f"customer-{customer['id']}")).count("CustomerUpdated") == 1


async def test_on_authnet_a_first_update_with_a_spent_nonce_takes_no_payment_profile_made_elsewhere_for_its_own(
    store: EventStore, tmp_path: Path
) -> None:
    """E00114 on an update's first attempt: nothing of the update reached Authorize.net before, so the one payment
    profile the customer's profile holds beyond those recorded here (added outside this system, with that very
    nonce) is not its own. The update is recorded failed and the default payment method stays."""
    async with on_authnet() as (server, peer):
        worker = worker_process(store, peer, tmp_path)
        customer = await done(
            worker, "create_customer", {"email": "ada@example.com", "payment_method": peer.payment_method()}
        )
        nonce = peer.payment_method()
        elsewhere = peer.providers()[peer.name]
        made_elsewhere = await elsewhere.update_customer(
            customer["provider_reference"],
            CustomerRequest("made-elsewhere", payment_method=OpaqueData(nonce["data_descriptor"], nonce["data_value"])),
        )
        assert made_elsewhere.outcome is Outcome.APPROVED

        sent = command("update_customer", {"customer_id": customer["id"], "payment_method": nonce})
        refused = dict(await worker.handle(delivery(sent)))
        shown = await done(worker, "get_customer", {"customer_id": customer["id"]})
    assert refused["status"] >= 400 and "Invalid OTS Token" in refused["body"]["error"]["message"], refused
    assert shown["default_payment_method"] == customer["default_payment_method"]
    assert len(server.state.profiles[customer["provider_reference"]].payment_profiles) == 2
    assert (await stream_types(store, f"customer-{customer['id']}"))[-1] == "CustomerUpdateFailed"


@pytest.mark.parametrize(
    ("point", "added_before"),
    [(serialized.AFTER_CHANGE_CALL, True), (serialized.AFTER_CHANGE_REQUESTED, False)],
    ids=["the dead attempt added the payment profile", "the dead attempt sent nothing"],
)
async def test_on_authnet_a_stale_update_carried_on_by_another_command_never_sends_an_empty_nonce(
    store: EventStore, tmp_path: Path, point: str, added_before: bool
) -> None:
    """An update with an Accept.js nonce left open by a crash, carried on by the next update of the customer: that
    command does not have the nonce (never stored), so it sends none. The payment profile the dead attempt added is
    recorded as the default; when it added none, the stale update is recorded failed (400 naming payment_method).
    Either way the next update is then made."""
    async with on_authnet() as (server, peer):
        first = worker_process(store, peer, tmp_path)
        customer = await done(
            first, "create_customer", {"email": "ada@example.com", "payment_method": peer.payment_method()}
        )
        stale = command("update_customer", {"customer_id": customer["id"], "payment_method": peer.payment_method()})
        with faults.hook(point, crash), pytest.raises(SimulatedCrash):
            await first.handle(delivery(stale, "msg-1"))

        restarted = worker_process(store, peer, tmp_path)
        await asyncio.sleep(IN_FLIGHT_WINDOW_S * 1.5)
        changed = await done(restarted, "update_customer", {"customer_id": customer["id"], "email": NEW_EMAIL})
        await asyncio.sleep(IN_FLIGHT_WINDOW_S * 1.5)
        stale_reply = dict(await restarted.handle(delivery(stale, "msg-2")))
        payment_profiles = server.state.profiles[customer["provider_reference"]].payment_profiles
        sent = server.state.requests.count("createCustomerPaymentProfileRequest")
    assert changed["email"] == NEW_EMAIL
    assert sent == (1 if added_before else 0)  # the dead attempt's, never an empty one
    assert len(payment_profiles) == (2 if added_before else 1)
    if added_before:
        newest = max(payment_profiles, key=int)
        assert changed["default_payment_method"] == f"{customer['provider_reference']}/{newest}"
        assert stale_reply["status"] == 200, stale_reply
    else:
        assert changed["default_payment_method"] == customer["default_payment_method"]
        assert stale_reply["status"] == 400 and stale_reply["body"]["error"]["param"] == "payment_method"
