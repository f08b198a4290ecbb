"""The resilience layer around providers: pybreaker's breaker around an await, retries with full jitter for
retryable answers only (same idempotency key, bounded by a budget), the open breaker answered without a call,
half-open → closed, and what the transactions worker makes of it (503 + Retry-After, the refusal recorded,
the recovery sweep waiting for the breaker). Real sandbox ledgers and event stores; the only stand-in is a
scripted provider where a test needs an exact sequence of answers."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pybreaker
import pytest
from payments_shared import ids
from payments_shared.broker.port import Message
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import EventStore, EventStoreUnavailable, RecordedEvent
from payments_shared.messages import Command
from payments_shared.providers.port import Claims, Outcome, PaymentRef, PaymentRequest, ProviderResult
from payments_shared.providers.registry import breaker_states, build_providers, close_providers, with_resilience
from payments_shared.providers.resilience import (
    BreakerPolicy,
    ResilientProvider,
    RetryPolicy,
    call_budget,
)
from payments_shared.providers.sandbox import SandboxProvider, SandboxSettings
from payments_shared.settings import ProviderSettings
from payments_transactions.domain.decisions import provider_call_failed
from payments_transactions.domain.state import Operation, OperationKind
from payments_transactions.provider_calls import call_provider
from payments_transactions.recovery import required_idle_for, required_idle_s
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker

from tests.support.gate import Gate, cancel_as_the_gate_opens

FAST_RETRY = RetryPolicy(attempts=3, base_s=0.001, cap_s=0.005, attempt_timeout_s=2.0)
VISA = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"}


class ScriptedProvider:
    """Answers `pay` from a script (the last answer repeats) and remembers every idempotency key it saw."""

    name = "scripted"

    def __init__(self, *answers: Outcome) -> None:
        self.answers = list(answers)
        self.keys: list[str] = []

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        self.keys.append(request.idempotency_key)
        outcome = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return ProviderResult(outcome, reference="ref_1", decline_code="generic_decline")

    async def capture(self, payment: PaymentRef, amount: int, idempotency_key: str) -> ProviderResult:
        raise NotImplementedError

    async def refund(
        self,
        payment: PaymentRef,
        amount: int,
        idempotency_key: str,
        reason: str | None,
        earlier_attempt_at: datetime | None = None,
    ) -> ProviderResult:
        raise NotImplementedError

    async def void(self, payment: PaymentRef, idempotency_key: str) -> ProviderResult:
        raise NotImplementedError


def payment(key: str = "key-1", method: str = "pm_card_visa") -> PaymentRequest:
    return PaymentRequest(idempotency_key=key, amount=1000, currency="usd", payment_method=method, capture=True)


def resilient(provider: Any, fail_max: int = 3, reset_s: float = 30.0, retry: RetryPolicy = FAST_RETRY) -> Any:
    return ResilientProvider(provider, retry, BreakerPolicy(fail_max, reset_s), random.Random(7))


@pytest.fixture
async def failing_sandbox(tmp_path: Path) -> AsyncIterator[SandboxProvider]:
    provider = SandboxProvider(tmp_path / "sandbox.db", SandboxSettings(failure_rate=1.0))
    yield provider
    await provider.close()


# ---- pybreaker around an await ----------------------------------------------------------------------------


async def test_pybreaker_calling_counts_a_failure_raised_after_an_await_and_opens() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, throw_new_error_on_trip=False)

    async def failing_call() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError), breaker.calling():
            await failing_call()
    assert breaker.current_state == pybreaker.STATE_OPEN
    called = False
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        called = True
    assert not called


# ---- retries ------------------------------------------------------------------------------------------------


async def test_a_retryable_answer_is_retried_with_the_same_key_until_it_succeeds() -> None:
    scripted = ScriptedProvider(Outcome.RETRYABLE, Outcome.RETRYABLE, Outcome.APPROVED)
    result = await resilient(scripted).pay(payment("the-key"))
    assert result.outcome is Outcome.APPROVED
    assert scripted.keys == ["the-key"] * 3


async def test_retries_stop_after_the_configured_attempts(failing_sandbox: SandboxProvider) -> None:
    wrapped = resilient(failing_sandbox, fail_max=10)
    result = await wrapped.pay(payment())
    assert result.outcome is Outcome.RETRYABLE
    assert wrapped.breaker.breaker.fail_counter == FAST_RETRY.attempts
    assert failing_sandbox.ledger.count() == 0


async def test_a_lost_reply_is_recovered_by_the_retry_and_money_moves_once(tmp_path: Path) -> None:
    settings = SandboxSettings(failure_rate=1.0, failure_after_commit=True)
    sandbox = SandboxProvider(tmp_path / "sandbox.db", settings)
    try:
        result = await resilient(sandbox).pay(payment("once"))
        assert result.outcome is Outcome.APPROVED  # the retry replays what the first call recorded
        assert sandbox.ledger.count() == 1
    finally:
        await sandbox.close()


@pytest.mark.parametrize("outcome", [Outcome.DECLINED, Outcome.PERMANENT, Outcome.REQUIRES_ACTION])
async def test_declines_and_permanent_errors_are_never_retried_nor_counted(outcome: Outcome) -> None:
    scripted = ScriptedProvider(outcome)
    wrapped = resilient(scripted, fail_max=2)
    for number in range(5):
        assert (await wrapped.pay(payment(f"k{number}"))).outcome is outcome
    assert len(scripted.keys) == 5
    assert wrapped.breaker.state == pybreaker.STATE_CLOSED
    assert wrapped.breaker.breaker.fail_counter == 0


async def test_an_invalid_payment_method_from_the_real_sandbox_does_not_count(tmp_path: Path) -> None:
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    wrapped = resilient(sandbox, fail_max=1)
    try:
        for number in range(3):
            result = await wrapped.pay(payment(f"k{number}", method="pm_card_unknown"))
            assert result.outcome is Outcome.PERMANENT and result.details["invalid_param"] == "payment_method"
        assert wrapped.breaker.state == pybreaker.STATE_CLOSED
    finally:
        await sandbox.close()


async def test_the_budget_bounds_the_retries_but_the_first_attempt_is_always_made() -> None:
    scripted = ScriptedProvider(Outcome.RETRYABLE)
    slow_retry = RetryPolicy(attempts=5, base_s=0.5, cap_s=0.5, attempt_timeout_s=2.0)
    wrapped = resilient(scripted, fail_max=10, retry=slow_retry)
    with call_budget(0):
        assert (await wrapped.pay(payment())).outcome is Outcome.RETRYABLE
    assert len(scripted.keys) == 1


async def test_a_hanging_provider_is_a_retryable_failure_after_the_attempt_timeout(tmp_path: Path) -> None:
    sandbox = SandboxProvider(tmp_path / "sandbox.db", SandboxSettings(hang=True))
    quick = RetryPolicy(attempts=2, base_s=0.001, cap_s=0.001, attempt_timeout_s=0.05)
    wrapped = resilient(sandbox, fail_max=2, retry=quick)
    try:
        result = await wrapped.pay(payment())
        assert result.outcome is Outcome.RETRYABLE
        assert wrapped.breaker.state == pybreaker.STATE_OPEN
    finally:
        await sandbox.close()


class GatedProvider(ScriptedProvider):
    """Approves once `gate` is opened."""

    def __init__(self) -> None:
        super().__init__(Outcome.APPROVED)
        self.gate = Gate()

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        await self.gate.passing()
        return await super().pay(request)


def _outer_call(wrapped: Any) -> Any:
    """call_provider (the worker's outer bound) around the resilient provider, for a charge."""
    transaction = SimpleNamespace(
        amount=1000, currency="usd", kind="charge", customer_reference=None, description=None, metadata={}
    )
    operation = SimpleNamespace(command_id="key-1", amount=1000, kind=OperationKind.PAYMENT, requested_at=None)
    return call_provider(wrapped, transaction, operation, "pm_card_visa", 5.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("layer", ["attempt timeout", "outer bound"])
async def test_a_cancel_that_arrives_with_the_providers_answer_is_not_lost(layer: str) -> None:
    """The worker stopping (or a caller giving up) as the answer comes back must still cancel the caller: on
    Python 3.11, asyncio.wait_for returned the answer and dropped the cancel."""
    gated = GatedProvider()
    wrapped = resilient(gated)
    caller = asyncio.create_task(wrapped.pay(payment()) if layer == "attempt timeout" else _outer_call(wrapped))
    await cancel_as_the_gate_opens(caller, gated.gate)
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()


def test_full_jitter_stays_within_the_exponential_bound() -> None:
    policy = RetryPolicy(attempts=10, base_s=0.1, cap_s=1.0, attempt_timeout_s=1.0)
    rng = random.Random(1)
    for retry in range(8):
        bound = min(1.0, 0.1 * 2**retry)
        delays = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0.0 <= delay <= bound for delay in delays)
        assert max(delays) > bound / 2  # jitter spreads over the whole range, not around one value


# ---- the breaker --------------------------------------------------------------------------------------------


async def test_the_breaker_opens_after_the_threshold_and_then_refuses_without_calling(
    failing_sandbox: SandboxProvider,
) -> None:
    no_retry = RetryPolicy(attempts=1, base_s=0, cap_s=0, attempt_timeout_s=2.0)
    counted: list[str] = []
    real_pay = failing_sandbox.pay

    async def counting_pay(request: PaymentRequest) -> ProviderResult:
        counted.append(request.idempotency_key)
        return await real_pay(request)

    failing_sandbox.pay = counting_pay  # type: ignore[method-assign]
    wrapped = resilient(failing_sandbox, fail_max=3, reset_s=30, retry=no_retry)
    for number in range(3):
        assert (await wrapped.pay(payment(f"k{number}"))).outcome is Outcome.RETRYABLE
    assert wrapped.breaker.state == pybreaker.STATE_OPEN
    refused = await wrapped.pay(payment("k-refused"))
    assert refused.outcome is Outcome.UNAVAILABLE
    assert refused.retry_after is not None and 25 < refused.retry_after <= 30
    assert counted == ["k0", "k1", "k2"]  # the refused call never reached the provider


async def test_calls_failing_while_the_breaker_is_open_do_not_log_it_opening_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # pybreaker opens an open breaker again for each call in flight that fails: "breaker open, open -> open"
    # was logged once per call (probe: 28 lines in one run).
    class SlowlyFailing(ScriptedProvider):
        async def pay(self, request: PaymentRequest) -> ProviderResult:
            await asyncio.sleep(0.01)
            return await super().pay(request)

    no_retry = RetryPolicy(attempts=1, base_s=0, cap_s=0, attempt_timeout_s=2.0)
    wrapped = resilient(SlowlyFailing(Outcome.RETRYABLE), fail_max=1, retry=no_retry)
    with caplog.at_level(logging.INFO, logger="payments_shared.providers.resilience"):
        await asyncio.gather(*(wrapped.pay(payment(f"k{number}")) for number in range(5)))
    changes = [
        (vars(record)["breaker_from"], vars(record)["breaker_to"])
        for record in caplog.records
        if hasattr(record, "breaker_to")
    ]
    assert changes == [("closed", "open")]


async def test_calls_cancelled_by_a_stopping_worker_are_not_provider_failures() -> None:
    """A graceful stop (SIGTERM) cancels the calls in flight: that says nothing of the provider, and must not open
    its breaker (a false alarm on every rolling deploy)."""
    gated = GatedProvider()
    wrapped = resilient(gated, fail_max=2)
    for number in range(3):
        call = asyncio.create_task(wrapped.pay(payment(f"k{number}")))
        await asyncio.sleep(0.01)  # in flight, waiting for the provider
        call.cancel()
        ended = await asyncio.gather(call, return_exceptions=True)
        assert isinstance(ended[0], asyncio.CancelledError), ended  # not refused by an open breaker
    assert (wrapped.breaker.state, wrapped.breaker.breaker.fail_counter) == (pybreaker.STATE_CLOSED, 0)


async def test_half_open_lets_one_trial_through_and_a_success_closes_it(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"failure_rate": 1.0}))
    sandbox = SandboxProvider(tmp_path / "sandbox.db", SandboxSettings(faults_file=faults))
    no_retry = RetryPolicy(attempts=1, base_s=0, cap_s=0, attempt_timeout_s=2.0)
    wrapped = resilient(sandbox, fail_max=2, reset_s=0.2, retry=no_retry)
    try:
        for number in range(2):
            await wrapped.pay(payment(f"k{number}"))
        assert wrapped.breaker.state == pybreaker.STATE_OPEN
        await asyncio.sleep(0.25)
        assert (await wrapped.pay(payment("trial-fails"))).outcome is Outcome.RETRYABLE
        assert wrapped.breaker.state == pybreaker.STATE_OPEN  # the failed trial re-opened it
        faults.write_text(json.dumps({"failure_rate": 0.0, "latency_ms": 100}))  # the provider recovers
        await asyncio.sleep(0.25)
        trial = asyncio.create_task(wrapped.pay(payment("trial-succeeds")))
        await asyncio.sleep(0.02)
        assert wrapped.breaker.state == pybreaker.STATE_HALF_OPEN
        concurrent = await wrapped.pay(payment("during-trial"))
        assert concurrent.outcome is Outcome.UNAVAILABLE  # one trial at a time
        assert (await trial).outcome is Outcome.APPROVED
        assert wrapped.breaker.state == pybreaker.STATE_CLOSED
        assert (await wrapped.pay(payment("after"))).outcome is Outcome.APPROVED
        assert sandbox.ledger.count() == 2
    finally:
        await sandbox.close()


async def test_the_registry_wraps_every_provider_once_and_reports_breakers(tmp_path: Path) -> None:
    settings = ProviderSettings(breaker_fail_max=4, breaker_reset_timeout_s=9)
    providers = build_providers(settings, tmp_path)
    try:
        wrapped = with_resilience(providers, settings)
        assert with_resilience(wrapped, settings)["sandbox"] is wrapped["sandbox"]
        assert wrapped["sandbox"].ledger is providers["sandbox"].ledger  # type: ignore[attr-defined]
        assert breaker_states(wrapped) == {
            "sandbox": {"state": "closed", "fail_counter": 0, "fail_max": 4, "seconds_to_half_open": None}
        }
    finally:
        await close_providers(providers)


# ---- in the transactions worker -------------------------------------------------------------------------


@pytest.fixture
def store(each_embedded_store: EventStore) -> EventStore:
    return each_embedded_store


def charge_message(key: str, workspace: str = "ws_r") -> Message:
    command_id = ids.command_id(workspace, key)
    payload = {**VISA, "transaction_id": ids.derived_id("txn", command_id), "provider": None}
    command = Command(
        type="charge",
        workspace=workspace,
        actor="user_1",
        command_id=command_id,
        payload=payload,
        idempotency_key=key,
        fingerprint=ids.fingerprint("POST /api/v1/payments/charge", VISA),
    )
    return Message(body=command.model_dump(), message_id=str(uuid.uuid4()))


def query_message(kind: str, transaction_id: str, workspace: str = "ws_r") -> Message:
    command = Command(
        type=kind,
        workspace=workspace,
        actor="user_1",
        command_id=ids.command_id(workspace, None),
        payload={"transaction_id": transaction_id},
    )
    return Message(body=command.model_dump())


async def test_an_open_breaker_is_a_503_with_retry_after_and_the_refusal_is_recorded(
    store: EventStore, failing_sandbox: SandboxProvider, tmp_path: Path
) -> None:
    settings = TransactionsSettings(
        data_dir=tmp_path, breaker_fail_max=2, breaker_reset_timeout_s=40, provider_retry_attempts=1
    )
    worker = TransactionsWorker(store, {"sandbox": failing_sandbox}, settings)
    for number in range(2):
        assert (await worker.handle(charge_message(f"k{number}")))["status"] == 503
    assert worker.breakers()["sandbox"]["state"] == "open"
    reply = await worker.handle(charge_message("refused"))
    assert reply["status"] == 503
    assert reply["body"]["error"]["type"] == "provider_unavailable"
    assert 30 <= int(reply["headers"]["Retry-After"]) <= 40
    transaction_id = reply["body"]["error"]["transaction_id"]
    events = (await worker.handle(query_message("get_transaction_events", transaction_id)))["body"]["data"]
    assert [event["type"] for event in events] == ["TransactionRequested", "ProviderCallFailed"]
    assert events[1]["data"]["outcome"] == "unavailable"
    assert (await worker.handle(query_message("get_transaction", transaction_id)))["body"]["status"] == "pending"
    assert await worker.recover(min_age_s=0) == 0  # the sweep waits for the breaker instead of piling up refusals


async def test_an_unwritable_event_store_is_a_503_and_nothing_is_recorded(tmp_path: Path) -> None:
    store = open_event_store(f"sqlite:///{tmp_path / 'events.db'}")
    sandbox = SandboxProvider(tmp_path / "sandbox.db")
    worker = TransactionsWorker(store, {"sandbox": sandbox}, TransactionsSettings(data_dir=tmp_path))
    await store.close()  # every read and append now fails as unavailable
    try:
        reply = await worker.handle(charge_message("store-down"))
        assert reply["status"] == 503
        assert reply["body"]["error"]["code"] == "service_unavailable"
        assert "Retry-After" in reply["headers"]
        assert sandbox.ledger.count() == 0
    finally:
        await sandbox.close()


def test_the_sweep_backs_off_an_operation_that_keeps_failing() -> None:
    assert required_idle_s(5, 0) == 5
    assert required_idle_s(5, 1) == 10
    assert required_idle_s(5, 3) == 40
    assert required_idle_s(5, 50) == 300
    assert required_idle_s(0, 7) == 0  # start-up recovery in embedded mode drives everything


def _failed(unresolved: list[str] | None = None, retry_after: float | None = None) -> RecordedEvent:
    data: dict[str, Any] = {"command_id": "cmd", "retry_after": retry_after}
    if unresolved is not None:
        data["unresolved"] = unresolved
    return RecordedEvent(uuid.uuid4(), "transaction-txn_1", "ProviderCallFailed", data, {}, 1, 1, datetime.now(UTC))


def test_the_sweep_asks_again_after_an_unresolved_answer_only_when_its_retry_after_has_passed() -> None:
    unresolved = _failed(["pi_1", "pi_2"], retry_after=3600.0)
    assert required_idle_for(30, [_failed(), unresolved]) == 3600  # not every 300 s: an operator decides
    assert required_idle_for(30, [unresolved, _failed()]) == required_idle_s(30, 2)  # the last answer counts
    assert required_idle_for(0, [unresolved]) == 0  # start-up recovery in embedded mode drives everything


def test_an_unresolved_answer_is_recorded_with_the_objects_an_operator_chooses_between() -> None:
    operation = Operation(OperationKind.PAYMENT, "cmd", "msg", None, datetime.now(UTC), amount=1000)
    answer = ProviderResult(Outcome.RETRYABLE, message="several", retry_after=3600.0, details={"unresolved": ["pi_1"]})
    event = provider_call_failed(operation, answer)
    assert (event.data["unresolved"], event.data["retry_after"]) == (["pi_1"], 3600.0)
    assert "unresolved" not in provider_call_failed(operation, ProviderResult(Outcome.RETRYABLE)).data


async def test_the_periodic_sweep_drives_an_abandoned_charge(store: EventStore, tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"failure_rate": 1.0}))
    sandbox = SandboxProvider(tmp_path / "sandbox.db", SandboxSettings(faults_file=faults))
    settings = TransactionsSettings(
        data_dir=tmp_path, provider_retry_attempts=1, recovery_interval_s=0.05, recovery_min_age_s=0
    )
    worker = TransactionsWorker(store, {"sandbox": sandbox}, settings)
    try:
        reply = await worker.handle(charge_message("swept"))
        assert reply["status"] == 503
        transaction_id = reply["body"]["error"]["transaction_id"]
        faults.unlink()  # the provider is back; nobody retries the request: the sweep must finish it
        worker.start_sweeping()
        for _ in range(200):
            got = await worker.handle(query_message("get_transaction", transaction_id))
            if got["body"]["status"] != "pending":
                break
            await asyncio.sleep(0.05)
        assert got["body"]["status"] == "captured"
        assert sandbox.ledger.count() == 1
    finally:
        await worker.stop()
        await sandbox.close()


class UnresolvedProvider(ScriptedProvider):
    """Answers every payment as unresolved: several provider objects may be an earlier attempt's."""

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        self.keys.append(request.idempotency_key)
        return ProviderResult(Outcome.RETRYABLE, message="ambiguous", details={"unresolved": ["pi_1", "pi_2"]})


async def test_an_unresolved_answer_is_neither_retried_nor_counted_by_the_breaker() -> None:
    unresolved = UnresolvedProvider(Outcome.RETRYABLE)
    wrapped = resilient(unresolved, fail_max=2)

    results = [await wrapped.pay(payment(f"k{number}")) for number in range(3)]

    assert all(r.outcome is Outcome.RETRYABLE and r.details["unresolved"] for r in results)
    assert unresolved.keys == ["k0", "k1", "k2"]  # asking again at once would answer the same
    assert wrapped.breaker.state == pybreaker.STATE_CLOSED  # Stripe answered: it is not down
    assert wrapped.breaker.breaker.fail_counter == 0


class LaggingReportsProvider(ScriptedProvider):
    """Answers every payment: what an earlier attempt did is not in its reports yet (Authorize.net's lag)."""

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        self.keys.append(request.idempotency_key)
        return ProviderResult.awaiting_reports("not listed yet", retry_after=30.0)


async def test_an_answer_awaiting_the_providers_reports_is_neither_retried_nor_counted_by_the_breaker() -> None:
    """One payment whose earlier attempt the reports do not show yet must not open the breaker for every other
    payment of the process (it did: a probe's lagging refund refused every workspace's charges for a minute)."""
    lagging = LaggingReportsProvider(Outcome.RETRYABLE)
    wrapped = resilient(lagging, fail_max=2)

    results = [await wrapped.pay(payment(f"k{number}")) for number in range(3)]

    assert all(r.outcome is Outcome.RETRYABLE and r.retry_after == 30.0 for r in results)
    assert lagging.keys == ["k0", "k1", "k2"]
    assert wrapped.breaker.state == pybreaker.STATE_CLOSED
    assert wrapped.breaker.breaker.fail_counter == 0


class ClaimsAskingProvider(ScriptedProvider):
    """Answers a look-up, then asks the caller's `claims` of what it found (as Stripe's re-drive does)."""

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        self.keys.append(request.idempotency_key)
        assert request.claims is not None
        claims = await request.claims(["pi_1"])
        return ProviderResult(Outcome.APPROVED, reference="pi_1", details={"owned": sorted(claims.owned)})


async def test_what_the_callers_claims_raise_goes_through_unchanged_neither_counted_nor_retried() -> None:
    asking = ClaimsAskingProvider(Outcome.APPROVED)
    wrapped = resilient(asking, fail_max=2)
    down = EventStoreUnavailable("sqlite event store: disk I/O error")

    async def unreadable(references: Sequence[str]) -> Claims:
        raise down

    for number in range(3):
        with pytest.raises(EventStoreUnavailable) as raised:
            await wrapped.pay(replace(payment(f"k{number}"), claims=unreadable))
        assert raised.value is down  # the store's own error: the worker answers 503 store_unavailable

    assert asking.keys == ["k0", "k1", "k2"]  # not retried: asking the provider again would not read the store
    assert wrapped.breaker.state == pybreaker.STATE_CLOSED  # old code: open after two
    assert wrapped.breaker.breaker.fail_counter == 0

    async def readable(references: Sequence[str]) -> Claims:
        return Claims(frozenset(references))

    result = await wrapped.pay(replace(payment("k3"), claims=readable))  # the caller's callback is still asked
    assert (result.outcome, result.details["owned"]) == (Outcome.APPROVED, ["pi_1"])
