"""The provider port: what the workers ask of Stripe, Authorize.net or the sandbox.

Adapters never raise for an outcome the provider gave (approved, declined, error): they return a
`ProviderResult`. They raise only for their own bugs. `RETRYABLE` means "the call may or may not have reached
the provider and trying again with the same idempotency key is safe"; `PERMANENT` means "trying again will not
help" (a 502 to the client); `UNAVAILABLE` is set by the resilience layer when a breaker is open (a 503).
A `PERMANENT` result whose `details` hold `{"invalid_param": "<field>"}` means the provider refused that request
parameter (e.g. an unknown `payment_method`): the client gets 400 `invalid_request_error` with that `param`.
One whose `details` hold `{"conflict": "<code>"}` refuses it in the payment's present state (409 `conflict`); billing
reads it on a customer's deletion only (Authorize.net's profile still billed by a subscription unknown here).
An APPROVED refund whose `details` hold `{"pending": True}` is accepted but not yet done (the provider tells later).
A RETRYABLE result whose `details` hold `{"unresolved": [ids…]}` is no provider failure: the provider answered, but
several of its objects may be an earlier attempt's, so nothing was created (or, Authorize.net, an earlier attempt
that may have been made is not listed long after: the ids are what to look for); the operation stays open for an
operator, and trying again at once would answer the same (not retried, not counted by the circuit breaker).
One whose `details` hold `{"awaiting_reports": True}` is no provider failure either: the provider answered, but what
an earlier attempt did is not in its reports yet (they lag); it is looked up again after `retry_after`, not at once,
and not counted by the circuit breaker (a lagging report must not stop every other payment).
A payment re-drive that looks for what its earlier attempt made by what it sent asks `PaymentRequest.claims` what the
caller's records say of the objects it found (`Claims`): one another payment recorded is never adopted, and none is
while another payment that sent the same has no answer recorded. `claims` reads the caller's records, not the
provider: what it raises is the caller's (an event store that cannot be read) and goes through the adapter and the
resilience layer unchanged, never counted as the provider's failure nor retried. An adapter that asks it says when
(`asks_claims`, optional), so the caller can bring its records up to date before the provider call, outside the
provider's time budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    REQUIRES_ACTION = "requires_action"
    PENDING_REVIEW = "pending_review"  # held by the provider (Authorize.net responseCode 4)
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class OpaqueData:
    """Accept.js payment nonce."""

    data_descriptor: str
    data_value: str


UNRESOLVED: Final = "unresolved"  # the `details` key of an unresolved answer's candidates
AWAITING_REPORTS: Final = "awaiting_reports"
# What a subscription change bills by; any other change (its metadata) a canceled subscription still takes.
SUBSCRIPTION_BILLING_FIELDS: Final = ("quantity", "amount", "price", "cancel_at_period_end")

PaymentMethod = str | OpaqueData  # a provider token (pm_…, a payment profile id) or opaque data


@dataclass(frozen=True)
class ProviderResult:
    outcome: Outcome
    reference: str | None = None  # the provider's id of the object (pi_…, transId, cus_…, sub_…)
    decline_code: str | None = None
    message: str | None = None  # safe to show a client: never a key, token or card number
    next_action: Mapping[str, Any] | None = None
    amount: int | None = None  # the amount the provider acted on, when it says
    details: Mapping[str, Any] = field(default_factory=dict)  # recorded on the event (ids created, last4…)
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome is Outcome.APPROVED

    @classmethod
    def left_unresolved(cls, candidates: Sequence[str], message: str, retry_after: float) -> ProviderResult:
        """The provider answered, but any of `candidates` (its ids) may be an earlier attempt's: an operator decides
        (the module's docstring)."""
        return cls(Outcome.RETRYABLE, message=message, retry_after=retry_after, details={UNRESOLVED: list(candidates)})

    @classmethod
    def awaiting_reports(cls, message: str, retry_after: float) -> ProviderResult:
        """The provider answered; what an earlier attempt did is not in its reports yet (the module's docstring)."""
        return cls(Outcome.RETRYABLE, message=message, retry_after=retry_after, details={AWAITING_REPORTS: True})

    @property
    def unresolved(self) -> bool:
        return self.outcome is Outcome.RETRYABLE and bool(self.details.get(UNRESOLVED))

    @property
    def provider_answered(self) -> bool:
        """A RETRYABLE result the provider itself gave (unresolved, or awaiting its reports): no failure of it."""
        return self.unresolved or (self.outcome is Outcome.RETRYABLE and bool(self.details.get(AWAITING_REPORTS)))

    @property
    def refusal_code(self) -> str:
        """The error code of a parameter the provider refused (`invalid_param`): the provider's own (Stripe's
        `amount_too_small`…), else `parameter_invalid`."""
        return str(self.details.get("stripe_code") or "parameter_invalid")

    @property
    def candidates(self) -> list[str]:
        """The ids an unresolved answer leaves an operator to choose between (empty for any other answer)."""
        return [str(candidate) for candidate in self.details.get(UNRESOLVED) or ()] if self.unresolved else []


@dataclass(frozen=True)
class Claims:
    """What the caller's records say of provider objects an earlier attempt of a payment may have made."""

    # Those another payment recorded: that payment's, never this one's.
    owned: frozenset[str] = frozenset()
    # Another payment that sent the same has no answer recorded yet: an object nobody recorded may be its (its own
    # re-drive would adopt it too, or get it back by its key), so none can be adopted without an operator.
    contested: bool = False


ClaimsOn = Callable[[Sequence[str]], Awaitable[Claims]]  # the claims on these provider ids


@runtime_checkable
class AsksClaims(Protocol):
    """An adapter whose payment re-drives may ask `PaymentRequest.claims` (optional: others never ask it)."""

    def asks_claims(self, earlier_attempt_at: datetime, within_s: float) -> bool:
        """Whether a re-drive of a payment first attempted at `earlier_attempt_at`, made within `within_s` seconds
        from now, may ask `claims` (decided by the adapter's own clock)."""
        ...


@dataclass(frozen=True)
class PaymentRequest:
    idempotency_key: str  # the command id: the provider must act at most once per key
    amount: int
    currency: str  # lower case ISO 4217
    payment_method: PaymentMethod
    capture: bool  # False: authorize only
    customer_reference: str | None = None  # the provider's customer id, when charging a customer
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Set on a re-drive (a redelivery, a take-over, recovery): when the payment was first requested, so an earlier
    # attempt may have reached the provider since then. None: this is the first attempt.
    earlier_attempt_at: datetime | None = None
    # Asked by an adapter that finds an earlier attempt's object by what was sent rather than by our key (several
    # payments may have sent the same): None when the caller keeps no such records.
    claims: ClaimsOn | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PaymentRef:
    """An existing payment, as the provider knows it."""

    reference: str
    amount_authorized: int
    amount_captured: int
    currency: str
    details: Mapping[str, Any] = field(default_factory=dict)  # kept from earlier results
    # Refunds the provider is known to hold against it (refunded here, and refunds it reported that are not counted
    # yet), the one being made not among them: what can explain a refund refused as exceeding the charge.
    known_credits: int = 0


class PaymentProvider(Protocol):
    name: str

    async def pay(self, request: PaymentRequest) -> ProviderResult: ...

    async def capture(self, payment: PaymentRef, amount: int, idempotency_key: str) -> ProviderResult: ...

    async def refund(
        self,
        payment: PaymentRef,
        amount: int,
        idempotency_key: str,
        reason: str | None,
        earlier_attempt_at: datetime | None = None,  # as PaymentRequest's: set on a re-drive
    ) -> ProviderResult: ...

    async def void(self, payment: PaymentRef, idempotency_key: str) -> ProviderResult: ...


@dataclass(frozen=True)
class CustomerRequest:
    idempotency_key: str
    email: str | None = None
    name: str | None = None
    phone: str | None = None
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    payment_method: PaymentMethod | None = None
    cleared: frozenset[str] = frozenset()  # on an update: the fields sent as null, to be emptied at the provider
    accepted_at: datetime | None = None  # on a creation: when its command was accepted (SubscriptionRequest's)
    # On an update's re-drive (an earlier attempt may have reached the provider): every payment method this system
    # recorded for the customer, so a provider that cannot tell which payment method that attempt added (an
    # Accept.js nonce is spent by its first use) can find the one it holds beyond them. None on a first attempt.
    recorded_payment_methods: frozenset[str] | None = None


@dataclass(frozen=True)
class SubscriptionRequest:
    idempotency_key: str
    customer_reference: str | None  # the provider's customer id
    amount: int
    currency: str
    interval: str  # day | week | month | year
    interval_count: int
    quantity: int
    price: str | None = None  # a provider price/plan id given by the client
    trial_days: int | None = None
    payment_method: PaymentMethod | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # When the command was accepted: the same on every attempt of it (a provider that deduplicates on the start
    # date, as Authorize.net's ARB does, starts the subscription that day). None: now.
    accepted_at: datetime | None = None


@dataclass(frozen=True)
class SubscriptionChange:
    idempotency_key: str
    quantity: int | None = None
    amount: int | None = None
    currency: str | None = None  # the subscription's (a change never moves it): what `amount` counts in
    price: str | None = None
    cancel_at_period_end: bool | None = None
    metadata: Mapping[str, str] | None = None
    # The quantity the subscription has as the caller knows it: billed with a new price or amount when `quantity`
    # is not changed, and checked with the price's amount against the period limit.
    current_quantity: int | None = None

    @property
    def new_quantity(self) -> int | None:
        return self.quantity if self.quantity is not None else self.current_quantity

    @property
    def changes_billing(self) -> bool:
        """Whether it changes more than metadata (what a canceled subscription still takes, as at Stripe)."""
        return any(getattr(self, name) is not None for name in SUBSCRIPTION_BILLING_FIELDS)


class BillingProvider(Protocol):
    """Customers and subscriptions. Subscription results carry in `details`: `status` (API.md's names),
    `current_period_start`, `current_period_end` (unix seconds) and, where known, `cancel_at_period_end`."""

    name: str

    async def create_customer(self, request: CustomerRequest) -> ProviderResult: ...

    async def update_customer(self, reference: str, request: CustomerRequest) -> ProviderResult: ...

    async def delete_customer(self, reference: str, idempotency_key: str) -> ProviderResult: ...

    async def check_customer_deletable(self, reference: str, ours: Sequence[str]) -> ProviderResult:
        """Before anything of a customer's deletion is done: APPROVED unless the provider would refuse it for a
        subscription other than `ours` (the references of this system's subscriptions of it, which the deletion
        cancels first), then what `delete_customer` would answer (PERMANENT, `details["conflict"]`). Asks the
        provider only where such a refusal exists (Authorize.net; Stripe's deletion ends every subscription)."""
        ...

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult: ...

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult: ...

    async def cancel_subscription(
        self, reference: str, at_period_end: bool, idempotency_key: str
    ) -> ProviderResult: ...
