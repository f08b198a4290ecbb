"""The generic idempotency guard over a real event-store adapter (in memory): claim, replay, take-over rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from payments_shared.errors import ApiError
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.eventstore.port import NO_STREAM, NewEvent
from payments_shared.idempotency import (
    KEY_CLAIMED,
    KEY_RELEASED,
    KEY_REUSED,
    RESPONSE_RECORDED,
    Claimed,
    Hold,
    IdempotencyGuard,
    KeyState,
    Replay,
    created_stream,
    key_stream,
    may_take_over,
)
from payments_shared.ids import derived_id
from payments_shared.timestamps import as_utc
from payments_transactions.domain.events import stream_name

COMMAND_ID = "0b8f7a52-5d4e-4f61-9a0e-3c2d1b0a9f8e"  # command ids are UUIDs (payments_shared.ids.command_id)
CLAIM = {"fingerprint": "fp", "route": "refund", "target": "txn_1", "message_id": "m1"}
THE_LONGEST_WAIT = timedelta(hours=1)  # payments_shared.errors.LONGEST_RETRY_AFTER_S: an unresolved re-drive's hour
RESPONSE = {"status": 200, "body": {"id": "x", "amount": 5, "nested": {"b": 2, "a": 1}}, "headers": {}}


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


async def begin(guard: IdempotencyGuard, *, fingerprint="fp", route="refund", message_id="m1", redelivered=False):
    return await guard.begin(
        COMMAND_ID,
        fingerprint=fingerprint,
        route=route,
        target="txn_1",
        message_id=message_id,
        redelivered=redelivered,
        metadata={"actor": "tester"},
    )


async def test_first_use_claims_then_the_response_is_replayed_byte_identically(store) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    claimed = await begin(guard)
    assert isinstance(claimed, Claimed)
    kept = await guard.record(claimed, RESPONSE, {})
    assert kept == RESPONSE
    for _ in range(3):
        replay = await begin(guard, message_id="m-later")
        assert isinstance(replay, Replay)
        assert replay.response["body"] == RESPONSE["body"]
        assert replay.response["headers"] == {"Idempotent-Replayed": "true"}
    assert [event.type for event in await store.read(key_stream(COMMAND_ID))] == [KEY_CLAIMED, RESPONSE_RECORDED]


@pytest.mark.parametrize(("fingerprint", "route"), [("other", "refund"), ("fp", "capture")])
async def test_another_request_with_the_key_is_an_idempotency_error(store, fingerprint, route) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    await begin(guard)
    with pytest.raises(ApiError) as raised:
        await begin(guard, fingerprint=fingerprint, route=route, message_id="m2")
    assert (raised.value.status, raised.value.type) == (422, "idempotency_error")


async def test_while_in_flight_another_message_gets_409(store) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    await begin(guard)
    with pytest.raises(ApiError) as raised:
        await begin(guard, message_id="m2")
    assert (raised.value.status, raised.value.type) == (409, "conflict")


@pytest.mark.parametrize(("message_id", "redelivered"), [("m1", False), ("m2", True)])
async def test_a_redelivery_or_the_same_message_takes_over(store, message_id, redelivered) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    await begin(guard)
    taken = await begin(guard, message_id=message_id, redelivered=redelivered)
    assert isinstance(taken, Claimed)
    assert taken.version == 1


async def test_a_released_key_is_taken_over_by_the_next_request(store) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    claimed = await begin(guard)
    assert isinstance(claimed, Claimed)
    await guard.release(claimed, "provider_unavailable", {})
    taken = await begin(guard, message_id="m2")
    assert isinstance(taken, Claimed)
    types = [event.type for event in await store.read(key_stream(COMMAND_ID))]
    assert types == [KEY_CLAIMED, KEY_RELEASED, KEY_CLAIMED]


async def test_only_one_of_many_concurrent_requests_claims(store) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    outcomes = await asyncio.gather(*(begin(guard, message_id=f"m{i}") for i in range(16)), return_exceptions=True)
    claims = [outcome for outcome in outcomes if isinstance(outcome, Claimed)]
    refusals = [outcome for outcome in outcomes if isinstance(outcome, ApiError)]
    assert len(claims) == 1
    assert len(refusals) == 15
    assert {error.status for error in refusals} == {409}


async def test_only_one_of_two_concurrent_take_overs_wins(store) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    claimed = await begin(guard)
    assert isinstance(claimed, Claimed)
    await guard.release(claimed, "x", {})
    outcomes = await asyncio.gather(begin(guard, message_id="a"), begin(guard, message_id="b"), return_exceptions=True)
    assert sum(isinstance(outcome, Claimed) for outcome in outcomes) == 1


async def test_the_first_recorded_response_wins_a_race(store) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    first = await begin(guard)
    second = await begin(guard, message_id="m1")  # the same message again (a redelivery) takes over
    assert isinstance(first, Claimed) and isinstance(second, Claimed)
    assert await guard.record(second, RESPONSE, {}) == RESPONSE
    assert await guard.record(first, {"status": 500, "body": {}, "headers": {}}, {}) == RESPONSE


def test_take_over_rules() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fresh, stale = now - timedelta(seconds=5), now - timedelta(seconds=31)

    def rule(claimed_at: datetime, message_id: str = "m2", redelivered: bool = False, idle: bool = False) -> bool:
        return may_take_over(
            claimed_at=claimed_at,
            claim_message_id="m1",
            message_id=message_id,
            redelivered=redelivered,
            idle=idle,
            in_flight_window_s=30.0,
            now=now,
        )

    assert not rule(fresh)
    assert rule(stale)
    assert rule(fresh, message_id="m1")
    assert rule(fresh, redelivered=True)
    assert rule(fresh, idle=True)


async def test_a_key_whose_charge_created_its_transaction_is_refused_on_every_other_route(store) -> None:
    charge = NewEvent("TransactionRequested", {"amount": 100}, {})
    await store.append(created_stream(COMMAND_ID), [charge], NO_STREAM)
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    with pytest.raises(ApiError) as refused:
        await begin(guard)
    assert (refused.value.status, refused.value.type, refused.value.code) == (422, "idempotency_error", KEY_REUSED)
    # The claim gave way: its refusal is its response, replayed to a retry, and tells the charge it went no further.
    state = await guard.state(COMMAND_ID)
    assert state is not None and state.response == {"status": 422, "body": refused.value.body(), "headers": {}}
    again = await begin(guard, message_id="m2")
    assert isinstance(again, Replay) and again.response["body"] == refused.value.body()
    with pytest.raises(ApiError) as other_route:
        await begin(guard, route="capture")
    assert other_route.value.status == 422


class ChargeLandingOnTheClaim:
    """The real store, where the key's charge creates its transaction just before (`before_claim`) or just after a
    claim of the key is written, in both cases after the claiming request first looked for it."""

    def __init__(self, store: InMemoryEventStore, before_claim: bool) -> None:
        self._store = store
        self._before_claim = before_claim

    async def append(self, stream: str, events: Any, expected_version: int) -> int:
        if stream == key_stream(COMMAND_ID) and self._before_claim:
            await self._create_the_transaction()
        return await self._store.append(stream, events, expected_version)

    async def read(self, stream: str, from_version: int = 0) -> Any:
        if stream == created_stream(COMMAND_ID) and not self._before_claim:
            await self._create_the_transaction()
        return await self._store.read(stream, from_version)

    async def _create_the_transaction(self) -> None:
        if not await self._store.read(created_stream(COMMAND_ID)):
            charge = NewEvent("TransactionRequested", {"amount": 100}, {})
            await self._store.append(created_stream(COMMAND_ID), [charge], NO_STREAM)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_claim_gives_way_to_a_charge_created_just_before_it(store) -> None:
    guard = IdempotencyGuard(ChargeLandingOnTheClaim(store, before_claim=True), in_flight_window_s=30)
    with pytest.raises(ApiError) as refused:
        await begin(guard)
    assert (refused.value.status, refused.value.code) == (422, KEY_REUSED)
    created_at = (await store.read(created_stream(COMMAND_ID)))[0].position
    assert not await guard.claimed_before(COMMAND_ID, created_at)  # so that charge goes ahead


async def test_a_claim_goes_ahead_of_a_charge_created_just_after_it(store) -> None:
    guard = IdempotencyGuard(ChargeLandingOnTheClaim(store, before_claim=False), in_flight_window_s=30)
    assert isinstance(await begin(guard), Claimed)
    created_at = (await store.read(created_stream(COMMAND_ID)))[0].position
    assert await guard.claimed_before(COMMAND_ID, created_at)  # so that charge is refused


async def test_claimed_before_compares_the_first_claims_position(store) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    assert not await guard.claimed_before(COMMAND_ID, 10**9)  # no claim
    claimed = await begin(guard)
    assert isinstance(claimed, Claimed)
    await guard.record(claimed, RESPONSE, {})
    first = (await store.read(key_stream(COMMAND_ID)))[0].position
    assert await guard.claimed_before(COMMAND_ID, first + 1)
    assert not await guard.claimed_before(COMMAND_ID, first)


def test_the_created_stream_is_the_transaction_a_charge_with_that_command_id_makes() -> None:
    assert created_stream(COMMAND_ID) == stream_name(derived_id("txn", COMMAND_ID))


# ---- a release's Retry-After (the billing recovery sweep waits it out: KeyState.retry_due_at) -------------------


async def released_once(store, retry_after_s: float | None) -> KeyState:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    claimed = await begin(guard)
    assert isinstance(claimed, Claimed)
    await guard.release(claimed, "provider_unavailable", {}, retry_after_s)
    state = await guard.state(COMMAND_ID)
    assert state is not None and state.released
    return state


async def test_a_release_keeps_its_retry_after_and_one_recorded_without_it_sets_no_wait(store) -> None:
    waiting = await released_once(store, 3600)
    assert waiting.released_at is not None
    assert waiting.retry_due_at() == as_utc(waiting.released_at) + timedelta(hours=1)

    older = InMemoryEventStore()  # a key released before releases kept a Retry-After
    await older.append(key_stream(COMMAND_ID), [NewEvent(KEY_CLAIMED, CLAIM, {})], NO_STREAM)
    await older.append(key_stream(COMMAND_ID), [NewEvent(KEY_RELEASED, {"reason": "provider_unavailable"}, {})], 0)
    state = await IdempotencyGuard(older, in_flight_window_s=30).state(COMMAND_ID)
    assert state is not None and state.released and state.retry_due_at() is None


async def test_a_later_claim_of_the_key_clears_the_wait(store) -> None:
    await released_once(store, 3600)
    taker = await begin(IdempotencyGuard(store, in_flight_window_s=30), message_id="m-client-retry")
    assert isinstance(taker, Claimed) and taker.took_over
    state = await IdempotencyGuard(store, in_flight_window_s=30).state(COMMAND_ID)
    assert state is not None and not state.released and state.retry_due_at() is None


async def test_a_huge_retry_after_is_waited_out_for_at_most_the_longest_retry_after(store) -> None:
    state = await released_once(store, 1e30)  # centuries, or past the last date datetime holds
    due_at = state.retry_due_at()
    assert state.released_at is not None and due_at is not None
    assert due_at - as_utc(state.released_at) == THE_LONGEST_WAIT


# ---- a retry held to the Retry-After of a release `begin` is told to hold (billing's unresolved re-drive) ---------


async def test_a_held_release_answers_its_503_with_what_is_left_and_appends_nothing_until_it_has_passed(store) -> None:
    guard = IdempotencyGuard(store, in_flight_window_s=30)
    claimed = await begin(guard)
    assert isinstance(claimed, Claimed)
    await guard.release(claimed, "redrive_unresolved", {}, 3600, "An operator must decide.")
    state = await guard.state(COMMAND_ID)
    assert state is not None and state.released_at is not None
    held_for = frozenset({"redrive_unresolved"})
    recorded = len(await store.read(key_stream(COMMAND_ID)))

    within = Hold(as_utc(state.released_at) + timedelta(minutes=45), held_for)
    with pytest.raises(ApiError) as refused:
        await guard.begin(COMMAND_ID, **{**CLAIM, "message_id": "m-retry"}, redelivered=False, metadata={}, hold=within)
    error = refused.value
    assert (error.status, error.code, error.headers()) == (503, "redrive_unresolved", {"Retry-After": "900"})
    assert "An operator must decide." in error.message
    assert len(await store.read(key_stream(COMMAND_ID))) == recorded

    other_reason = Hold(within.now, frozenset({"something_else"}))
    taker = await guard.begin(
        COMMAND_ID, **{**CLAIM, "message_id": "m-retry"}, redelivered=False, metadata={}, hold=other_reason
    )
    assert isinstance(taker, Claimed) and taker.took_over


async def test_a_held_release_is_taken_over_once_its_retry_after_has_passed(store) -> None:
    state = await released_once(store, 3600)
    assert state.released_at is not None
    past = Hold(as_utc(state.released_at) + timedelta(hours=1, seconds=1), frozenset({"provider_unavailable"}))
    taker = await IdempotencyGuard(store, in_flight_window_s=30).begin(
        COMMAND_ID, **{**CLAIM, "message_id": "m-retry"}, redelivered=False, metadata={}, hold=past
    )
    assert isinstance(taker, Claimed) and taker.took_over
