"""A Stripe re-drive a day later asks the worker's `ProviderIndex` which of the intents it found other transactions
claim. That look-up reads the event store, not Stripe: end to end through the transactions worker (a real SQLite
event store) against the Stripe wire-format server and its movable clock,

- a store that cannot be read is the store's unavailability (503 store_unavailable, nothing recorded), never a
  failure of Stripe's circuit breaker;
- the index's first read of a large store happens before the Stripe call, not inside its per-attempt timeout;
- a normal payment, and a re-drive within Stripe's key retention, read nothing of the store (the hot path).

The client's 50 metadata keys leave no room for our tag, so the re-drive lists the intents created since its first
attempt and matches what it sends; the same order paid under another key is the candidate the claims leave out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pybreaker
import pytest
from payments_ops.resolve import resolve
from payments_shared import ids
from payments_shared.eventstore.port import NO_STREAM, EventStoreUnavailable, NewEvent, RecordedEvent
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.providers import stripe as stripe_adapter
from payments_shared.providers.resilience import ResilientProvider
from payments_shared.providers.stripe import StripeProvider
from payments_transactions.domain.decisions import DomainError
from payments_transactions.domain.resolution import Choice, Resolution
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker

from tests.support.stripe_redrive_worker import A_DAY_AND_MORE, TIMEOUT_S, charge, events_of, transaction
from tests.support.stripe_wire_server import SERVER_ERROR, WIRE_API_KEY, StripeWireServer

FILLER_EVENTS = 300  # a store with some history: its whole read takes longer than a Stripe attempt may
SLOW_READ_PER_EVENT_S = 2 * TIMEOUT_S / FILLER_EVENTS
REDRIVE_STARTED = "PaymentRedriveStarted"  # as stored


class WatchedStore(SqliteEventStore):
    """A real SQLite store whose `read_all` can be made to fail (from now, or once Stripe has answered a listing of
    intents, i.e. inside the re-drive's Stripe call) or to take time for every event it reads (a large store)."""

    def __init__(self, path: Path, wire: StripeWireServer) -> None:
        super().__init__(path)
        self.wire = wire
        self.down = False
        self.down_once_listed = False
        self.per_event_s = 0.0
        self.reads = 0
        self.before_redrive_starts: Callable[[], Awaitable[object]] | None = None  # run once, then cleared

    def listed(self) -> bool:
        return any(r.method == "GET" and r.path == "/v1/payment_intents" for r in self.wire.requests)

    async def append(self, stream: str, events: Sequence[NewEvent], expected_version: int) -> int:
        if self.before_redrive_starts is not None and any(e.type == REDRIVE_STARTED for e in events):
            run, self.before_redrive_starts = self.before_redrive_starts, None
            await run()
        return await super().append(stream, events, expected_version)

    async def read_all(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        self.reads += 1
        if self.down or (self.down_once_listed and self.listed()):
            raise EventStoreUnavailable("sqlite event store: disk I/O error")
        async for event in super().read_all(from_position):
            if self.per_event_s:
                await asyncio.sleep(self.per_event_s)
            yield event


@pytest.fixture
async def store(tmp_path: Path, wire: StripeWireServer) -> AsyncIterator[WatchedStore]:
    opened = WatchedStore(tmp_path / "events.db", wire)
    yield opened
    await opened.close()


@pytest.fixture
async def worker(wire: StripeWireServer, store: WatchedStore, tmp_path: Path) -> AsyncIterator[TransactionsWorker]:
    adapter = StripeProvider(WIRE_API_KEY, api_base=wire.base_url, timeout_s=TIMEOUT_S)
    settings = TransactionsSettings(
        data_dir=tmp_path,
        provider_timeout_s=TIMEOUT_S,
        provider_retry_attempts=1,
        in_flight_window_s=30,
        breaker_fail_max=2,  # the setup's 500 alone does not open it; B's success resets the count
    )
    yield TransactionsWorker(store, {"stripe": adapter}, settings)
    await adapter.close()


def next_day(wire: StripeWireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stripe's clock and ours 25 h on: Stripe has forgotten every key used so far."""
    wire.advance(A_DAY_AND_MORE.total_seconds())
    monkeypatch.setattr(stripe_adapter, "_utc_now", lambda: datetime.now(UTC) + A_DAY_AND_MORE)


def stripe_breaker(worker: TransactionsWorker) -> pybreaker.CircuitBreaker:
    provider = worker.providers["stripe"]
    assert isinstance(provider, ResilientProvider)
    return provider.breaker.breaker


async def a_lost_payment_and_the_same_order_paid_again(wire: StripeWireServer, worker: TransactionsWorker) -> str:
    """A's first attempt made nothing at Stripe (its answer: a 500); the client paid the same order under another
    key (B, whose intent matches what A sends). Returns A's transaction id."""
    wire.fail_next(500, SERVER_ERROR)
    first = await charge(worker, "order-1")
    assert first["status"] == 503, first
    again = await charge(worker, "order-1-again")
    assert again["status"] == 201, again
    return ids.derived_id("txn", ids.command_id("ws_a", "order-1"))


def intents_listed(wire: StripeWireServer) -> int:
    return sum(1 for r in wire.requests if r.method == "GET" and r.path == "/v1/payment_intents")


async def test_a_store_that_cannot_be_read_when_a_redrive_looks_up_claims_is_a_503_not_a_stripe_failure(
    wire: StripeWireServer, store: WatchedStore, worker: TransactionsWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_id = await a_lost_payment_and_the_same_order_paid_again(wire, worker)
    next_day(wire, monkeypatch)
    events_before = len(await events_of(worker, a_id))
    store.down_once_listed = True  # the store fails once Stripe has answered the listing: inside the Stripe call

    retry = await charge(worker, "order-1")  # the client retries A: a re-drive past Stripe's key retention

    assert retry["status"] == 503, retry
    assert retry["body"]["error"]["code"] == "service_unavailable"  # the store's unavailability
    assert intents_listed(wire) == 1  # Stripe answered: it is not down
    breaker = stripe_breaker(worker)
    assert (breaker.current_state, breaker.fail_counter) == (pybreaker.STATE_CLOSED, 0)  # old code: 1 failure counted
    appended = [e["type"] for e in (await events_of(worker, a_id))[events_before:]]
    assert appended == [REDRIVE_STARTED]  # no failure, no outcome recorded for a store error

    store.down_once_listed = False  # the store is back: the next retry carries on
    paid = await charge(worker, "order-1")
    assert paid["status"] == 201, paid
    a = await transaction(worker, a_id)
    assert a["status"] == "captured"
    assert len(wire.payment_intents) == 2  # A's and B's, each made once


async def test_a_store_down_before_a_redrive_fails_it_before_stripe_is_asked_and_leaves_the_breaker_alone(
    wire: StripeWireServer, store: WatchedStore, worker: TransactionsWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    await a_lost_payment_and_the_same_order_paid_again(wire, worker)
    next_day(wire, monkeypatch)
    store.down = True

    retry = await charge(worker, "order-1")

    assert retry["status"] == 503, retry
    assert retry["body"]["error"]["code"] == "service_unavailable"
    assert intents_listed(wire) == 0  # the index is caught up before Stripe is asked anything
    breaker = stripe_breaker(worker)
    assert (breaker.current_state, breaker.fail_counter) == (pybreaker.STATE_CLOSED, 0)  # old code: 1 failure counted


async def fill(store: SqliteEventStore, count: int) -> None:
    """Other history in the store (another service's streams): what the index's first read goes through."""
    for number in range(count):
        await store.append(f"other-{number}", [NewEvent("SomethingHappened", {"n": number})], NO_STREAM)


async def test_the_index_first_read_of_a_large_store_is_not_inside_the_stripe_attempts_timeout(
    wire: StripeWireServer, store: WatchedStore, worker: TransactionsWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_id = await a_lost_payment_and_the_same_order_paid_again(wire, worker)
    await fill(store, FILLER_EVENTS)
    next_day(wire, monkeypatch)
    store.per_event_s = SLOW_READ_PER_EVENT_S  # the whole store takes about twice a Stripe attempt's timeout

    retry = await charge(worker, "order-1")

    assert retry["status"] == 201, retry  # old code: the catch-up inside the attempt timed out (503, retryable)
    a = await transaction(worker, a_id)
    assert a["status"] == "captured"
    assert len(wire.payment_intents) == 2  # B's intent left out, A's made once
    breaker = stripe_breaker(worker)
    assert (breaker.current_state, breaker.fail_counter) == (pybreaker.STATE_CLOSED, 0)
    assert not [e for e in await events_of(worker, a_id) if e["type"] == "ProviderCallFailed"][1:]  # the 500 only


async def test_a_payment_and_a_redrive_within_the_key_retention_read_nothing_of_the_store(
    wire: StripeWireServer, store: WatchedStore, worker: TransactionsWorker
) -> None:
    wire.fail_next(500, SERVER_ERROR)
    first = await charge(worker, "order-2")
    assert first["status"] == 503, first
    paid = await charge(worker, "order-2")  # a re-drive: Stripe still holds the key, nothing is looked up
    assert paid["status"] == 201, paid
    other = await charge(worker, "order-3")
    assert other["status"] == 201, other

    assert store.reads == 0  # no catch-up of the index on the charge path


# ---- an operator's decision while a re-drive of the same payment is running ---------------------------------------


def resolving(wire: StripeWireServer) -> Callable[[str], StripeProvider]:
    """What `payments-ops resolve` reads the adopted intent with: its own adapter (it closes it when done)."""
    return lambda provider: StripeProvider(WIRE_API_KEY, api_base=wire.base_url, timeout_s=TIMEOUT_S)


async def two_unresolved_payments_and_b_resolved(
    wire: StripeWireServer, store: WatchedStore, worker: TransactionsWorker, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """A (its first attempt made nothing) and B (Stripe made pi_B, its answer lost) of one order, both left unresolved
    with [pi_B] by a re-drive a day later; then an operator adopts pi_B for B. A's next re-drive finds pi_B B's and
    nobody else open with the same order: it creates A's intent (money moves). Returns A's id and pi_B."""
    wire.fail_next(500, SERVER_ERROR)
    await charge(worker, "order-4-first")
    wire.stall_next(TIMEOUT_S * 4)
    await charge(worker, "order-4-again")
    a_id, b_id = (ids.derived_id("txn", ids.command_id("ws_a", key)) for key in ("order-4-first", "order-4-again"))
    [pi_b] = list(wire.payment_intents)
    next_day(wire, monkeypatch)
    stripe_breaker(worker).close()  # the two failures opened it; a day later it has long closed again
    assert await worker.recover(min_age_s=0) == 2  # both unresolved
    await resolve(store, b_id, Resolution("ana", Choice.ADOPT, pi_b), resolving(wire))
    return a_id, pi_b


async def test_an_operator_deciding_while_a_redrive_that_moves_money_runs_is_refused_and_the_money_is_recorded(
    wire: StripeWireServer, store: WatchedStore, worker: TransactionsWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_id, pi_b = await two_unresolved_payments_and_b_resolved(wire, store, worker, monkeypatch)
    listed_before = intents_listed(wire)
    wire.stall_next(TIMEOUT_S / 2)  # A's re-drive: Stripe's listing answers late

    async def operator_meanwhile() -> str | None:
        while intents_listed(wire) == listed_before:  # noqa: ASYNC110 - the wire server's handler records it
            await asyncio.sleep(0.005)
        try:
            return await resolve(store, a_id, Resolution("ana", Choice.NOT_MADE), resolving(wire))
        except DomainError as refused:
            return refused.code

    driven, decided = await asyncio.gather(worker.recover(min_age_s=0), operator_meanwhile())

    assert driven == 1
    assert decided == "redrive_under_way"  # old code: A failed as not made, while its re-drive charged pi_new
    a = await transaction(worker, a_id)
    pi_new = a["provider_reference"]
    assert a["status"] == "captured"
    assert set(wire.payment_intents) == {pi_b, pi_new}  # every intent Stripe holds is one transaction's
    assert wire.payment_intents[pi_new]["status"] == "succeeded"


async def test_an_operator_decision_recorded_just_before_a_redrive_starts_keeps_stripe_from_being_asked(
    wire: StripeWireServer, store: WatchedStore, worker: TransactionsWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_id, pi_b = await two_unresolved_payments_and_b_resolved(wire, store, worker, monkeypatch)
    listed_before = intents_listed(wire)
    store.before_redrive_starts = lambda: resolve(store, a_id, Resolution("ana", Choice.NOT_MADE), resolving(wire))

    assert await worker.recover(min_age_s=0) == 1  # read A before the decision, appended after it

    a = await transaction(worker, a_id)
    assert (a["status"], a["failure_code"]) == ("failed", "payment_not_made")
    assert intents_listed(wire) == listed_before  # Stripe not asked: nothing made on a decided payment
    assert list(wire.payment_intents) == [pi_b]
