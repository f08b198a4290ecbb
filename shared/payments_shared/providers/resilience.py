"""Fault isolation around any provider adapter: one `pybreaker` circuit breaker per provider (per process) and
retries with exponential backoff and full jitter, bounded by a time budget.

- Only a `RETRYABLE` answer (or no answer within the per-attempt timeout) counts as a failure of the provider:
  declines, permanent errors and refused parameters prove the provider is up and count as successes, and so does
  an unresolved answer or one awaiting the provider's reports (`ProviderResult.provider_answered`: the provider
  answered; asking again at once would not help, so it is not retried either).
- While the breaker is open no call is made: the answer is `UNAVAILABLE` with `retry_after` = the seconds until
  it half-opens. Half-open lets one trial call through at a time; its answer closes or re-opens the breaker.
- A retry resends the same request, so the same idempotency key: the adapter's key (Stripe) or its look-up by
  invoice number (Authorize.net) makes a resend safe. Declines are never retried.
- What a payment's `claims` callback raises (the caller's records could not be read: the event store) is not the
  provider's doing: it goes through unchanged, neither counted by the breaker as a failure nor retried. The
  callback is asked only after the provider answered a look-up in that attempt, so pybreaker counts the attempt
  as what the provider did: an answer (an excluded exception is a success for pybreaker).
- The budget: `call_budget(seconds)` (a context variable) bounds the total time of one logical call with its
  retries, e.g. by the client's RPC deadline; the first attempt is always made.

`pybreaker` has no asyncio API; its `calling()` context manager holds no lock across the block, so
`with breaker.calling(): await …` counts the awaited call's failure and opens the breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import pybreaker

from payments_shared.providers.port import (
    Claims,
    ClaimsOn,
    CustomerRequest,
    Outcome,
    PaymentRef,
    PaymentRequest,
    ProviderResult,
    SubscriptionChange,
    SubscriptionRequest,
)
from payments_shared.tracing import traced_provider_call

logger = logging.getLogger(__name__)

HALF_OPEN_TRIAL_RETRY_AFTER_S: Final = 1.0

# The monotonic time (loop.time()) by which one logical call, retries included, must be done; None: no bound.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("provider_call_deadline", default=None)


@contextlib.contextmanager
def call_budget(seconds: float) -> Iterator[None]:
    """Bound every provider call made inside (in this task) to `seconds` from now, retries included."""
    token = _deadline.set(asyncio.get_running_loop().time() + max(0.0, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # in total, the first one included
    base_s: float
    cap_s: float
    attempt_timeout_s: float

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base · 2^retry)] before retry number `retry` (0-based)."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * (2**retry)))


@dataclass(frozen=True)
class BreakerPolicy:
    fail_max: int
    reset_timeout_s: float


class _RetryableFailure(Exception):
    """Raised inside the breaker's block so that pybreaker counts a retryable answer as a failure."""

    def __init__(self, result: ProviderResult) -> None:
        super().__init__(result.message or "retryable provider failure")
        self.result = result


class _CallersFailure(Exception):
    """Carries what the caller's `claims` callback raised through the breaker (excluded: not the provider's
    failure) to `ResilientProvider`, which raises it again as it was."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _callers_own(claims: ClaimsOn) -> ClaimsOn:
    async def asked(references: Sequence[str]) -> Claims:
        try:
            return await claims(references)
        except Exception as error:  # any of them is the caller's: raised again unchanged by `pay`
            raise _CallersFailure(error) from error

    return asked


class _StateLogger(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state is not None else None
        if old == new_state.name:  # pybreaker opens an open breaker again for each call that fails meanwhile
            return
        log = logger.warning if new_state.name == pybreaker.STATE_OPEN else logger.info
        log(
            "provider circuit breaker %s",
            new_state.name,
            extra={"provider": cb.name, "breaker_from": old, "breaker_to": new_state.name},
        )


class ProviderBreaker:
    """A pybreaker breaker for one provider, plus what clients and operators need to know about it."""

    def __init__(self, name: str, policy: BreakerPolicy) -> None:
        self.name = name
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=policy.fail_max,
            reset_timeout=policy.reset_timeout_s,
            listeners=[_StateLogger()],
            name=name,
            throw_new_error_on_trip=False,  # the call that trips it keeps its own answer
            # A call cancelled by its caller (a worker stopping) says nothing of the provider. pybreaker counts an
            # excluded exception as a success: the lesser error (a reset count) against a false open on every stop.
            # What the caller's `claims` raised is the caller's: asked only after the provider answered a look-up.
            exclude=[asyncio.CancelledError, _CallersFailure],
        )
        self._trial_running = False

    @property
    def state(self) -> str:
        return str(self.breaker.current_state)

    def seconds_to_half_open(self) -> float:
        opened_at = self.breaker._state_storage.opened_at  # pybreaker keeps it only there
        if self.state != pybreaker.STATE_OPEN or opened_at is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return max(0.0, self.breaker.reset_timeout - elapsed)

    def refuses(self) -> bool:
        """Open (before its timeout) or half-open with its one trial call under way: no call now."""
        if self.state == pybreaker.STATE_HALF_OPEN:
            return self._trial_running
        return self.state == pybreaker.STATE_OPEN and self.seconds_to_half_open() > 0

    def snapshot(self) -> dict[str, Any]:
        retry_after = self.seconds_to_half_open()
        return {
            "state": self.state,
            "fail_counter": self.breaker.fail_counter,
            "fail_max": self.breaker.fail_max,
            "seconds_to_half_open": round(retry_after, 3) if retry_after else None,
        }

    async def call(self, attempt: Callable[[], Awaitable[ProviderResult]]) -> ProviderResult:
        """One guarded attempt; `UNAVAILABLE` without calling when the breaker refuses."""
        if self.refuses():
            return self._refusal()
        trial = self.state != pybreaker.STATE_CLOSED
        self._trial_running = self._trial_running or trial
        try:
            with self.breaker.calling():
                result = await attempt()
                if result.outcome is Outcome.RETRYABLE and not result.provider_answered:
                    raise _RetryableFailure(result)
        except _RetryableFailure as failure:
            return failure.result
        except pybreaker.CircuitBreakerError:  # it opened between our check and the call
            return self._refusal()
        finally:
            if trial:
                self._trial_running = False
        return result

    def _refusal(self) -> ProviderResult:
        wait = self.seconds_to_half_open() or HALF_OPEN_TRIAL_RETRY_AFTER_S
        return ProviderResult(
            Outcome.UNAVAILABLE,
            message=f"The provider {self.name} is unavailable (circuit breaker open).",
            retry_after=wait,
            details={"breaker": "open"},
        )


class ResilientProvider:
    """Wraps a PaymentProvider (and BillingProvider) adapter; every port method goes through breaker and retries.
    Anything else (`close`, the sandbox's `ledger`…) is the wrapped adapter's own."""

    def __init__(
        self,
        wrapped: Any,
        retry: RetryPolicy,
        breaker: BreakerPolicy,
        rng: random.Random | None = None,
    ) -> None:
        self.wrapped = wrapped
        self.name: str = wrapped.name
        self.retry = retry
        self.breaker = ProviderBreaker(self.name, breaker)
        self._rng = rng or random.Random()

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.wrapped, attribute)

    # --- PaymentProvider ------------------------------------------------------------------------------------

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        if request.claims is None:
            return await self._run("pay", lambda: self.wrapped.pay(request))
        asking = replace(request, claims=_callers_own(request.claims))
        try:
            return await self._run("pay", lambda: self.wrapped.pay(asking))
        except _CallersFailure as failure:  # the caller's records could not be read: its error, not the provider's
            raise failure.error from failure.error.__cause__

    async def capture(self, payment: PaymentRef, amount: int, idempotency_key: str) -> ProviderResult:
        return await self._run("capture", lambda: self.wrapped.capture(payment, amount, idempotency_key))

    async def refund(
        self,
        payment: PaymentRef,
        amount: int,
        idempotency_key: str,
        reason: str | None,
        earlier_attempt_at: datetime | None = None,
    ) -> ProviderResult:
        refund = self.wrapped.refund
        return await self._run("refund", lambda: refund(payment, amount, idempotency_key, reason, earlier_attempt_at))

    async def void(self, payment: PaymentRef, idempotency_key: str) -> ProviderResult:
        return await self._run("void", lambda: self.wrapped.void(payment, idempotency_key))

    # --- BillingProvider (when the wrapped adapter is one) --------------------------------------------------

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        return await self._run("create_customer", lambda: self.wrapped.create_customer(request))

    async def update_customer(self, reference: str, request: CustomerRequest) -> ProviderResult:
        return await self._run("update_customer", lambda: self.wrapped.update_customer(reference, request))

    async def delete_customer(self, reference: str, idempotency_key: str) -> ProviderResult:
        return await self._run("delete_customer", lambda: self.wrapped.delete_customer(reference, idempotency_key))

    async def check_customer_deletable(self, reference: str, ours: Sequence[str]) -> ProviderResult:
        return await self._run(
            "check_customer_deletable", lambda: self.wrapped.check_customer_deletable(reference, ours)
        )

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        return await self._run("create_subscription", lambda: self.wrapped.create_subscription(request))

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult:
        return await self._run("update_subscription", lambda: self.wrapped.update_subscription(reference, change))

    async def cancel_subscription(self, reference: str, at_period_end: bool, idempotency_key: str) -> ProviderResult:
        return await self._run(
            "cancel_subscription",
            lambda: self.wrapped.cancel_subscription(reference, at_period_end, idempotency_key),
        )

    # --- the policy -----------------------------------------------------------------------------------------

    async def _run(self, operation: str, call: Callable[[], Awaitable[ProviderResult]]) -> ProviderResult:
        loop = asyncio.get_running_loop()
        deadline = _deadline.get()
        result = await self.breaker.call(lambda: self._attempt(operation, call, None))
        for retry in range(self.retry.attempts - 1):
            if result.outcome is not Outcome.RETRYABLE or result.provider_answered:
                return result
            delay = self.retry.backoff(retry, self._rng)
            if deadline is not None and loop.time() + delay >= deadline:
                logger.info("provider retry budget spent", extra={"provider": self.name, "operation": operation})
                return result
            logger.info(
                "retrying provider call",
                extra={"provider": self.name, "operation": operation, "retry": retry + 1, "delay_s": round(delay, 3)},
            )
            await asyncio.sleep(delay)
            result = await self.breaker.call(lambda: self._attempt(operation, call, deadline))
        return result

    async def _attempt(
        self, operation: str, call: Callable[[], Awaitable[ProviderResult]], deadline: float | None
    ) -> ProviderResult:
        """One call; no answer within the attempt timeout (or what is left of the budget: retries only, the
        first attempt always gets the whole attempt timeout) is RETRYABLE."""
        timeout = self.retry.attempt_timeout_s
        if deadline is not None:
            timeout = max(0.001, min(timeout, deadline - asyncio.get_running_loop().time()))
        try:
            async with asyncio.timeout(timeout):  # not wait_for: no extra task, and a cancel is never swallowed
                return await traced_provider_call(self.name, operation, call)
        except TimeoutError:
            logger.warning("provider call timed out", extra={"provider": self.name, "operation": operation})
            return ProviderResult(Outcome.RETRYABLE, message="The provider did not answer in time.", retry_after=1.0)
