"""The subscription: its fold, its status machine and the decisions about it (pure: no I/O; the clock and the
provider's answers are inputs).

Stream `subscription-{id}`: `SubscriptionCreated` (the whole subscription), `SubscriptionUpdated` (changed fields
with their new values), `SubscriptionCancelScheduled` (cancel at period end), `SubscriptionCanceled`
(immediately), `SubscriptionStatusChanged` (what the provider reports later through webhooks: renewals, failed
invoices). An update or cancel is recorded as requested (`SubscriptionUpdateRequested`,
`SubscriptionCancelRequested`) before its provider is asked, and finished by its outcome (one of the above with
its `command_id`, or `SubscriptionUpdateFailed`). Nothing changes a canceled subscription: every change is a 409,
every later report is ignored.

Stream `subscription-creation-{id}`: one `SubscriptionCreationRequested`, appended before the provider is first
asked to make the subscription: what the customer's state decided of its parameters (its provider reference, its
default payment method), so that every re-drive sends the provider the same ones under the same key. A lookup, not
the object: the subscription exists once `SubscriptionCreated` is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from payments_shared.errors import conflict, invalid, not_found
from payments_shared.metadata import merged_metadata, merged_metadata_within_limit
from payments_shared.money import MAX_AMOUNT, MAX_QUANTITY
from payments_shared.providers.port import SUBSCRIPTION_BILLING_FIELDS
from payments_shared.timestamps import api_timestamp

from payments_billing import periods
from payments_billing.events import DomainEvent, StoredEvent, known_changes
from payments_billing.pending import PendingChange, without_finished
from payments_billing.times import parse_iso

CREATED = "SubscriptionCreated"
UPDATED = "SubscriptionUpdated"
CANCEL_SCHEDULED = "SubscriptionCancelScheduled"
CANCELED = "SubscriptionCanceled"
STATUS_CHANGED = "SubscriptionStatusChanged"
# A provider report newer than any applied that changes nothing: kept, so that older reports arriving after it are
# not applied over it (reports apply in the provider's own order).
REPORT_NOTED = "SubscriptionProviderReportNoted"
UPDATE_REQUESTED = "SubscriptionUpdateRequested"
UPDATE_FAILED = "SubscriptionUpdateFailed"  # an update's or a cancel's failed outcome
CANCEL_REQUESTED = "SubscriptionCancelRequested"
CREATION_REQUESTED = "SubscriptionCreationRequested"

INCOMPLETE: Final = "incomplete"
TRIALING: Final = "trialing"
ACTIVE: Final = "active"
PAST_DUE: Final = "past_due"
UNPAID: Final = "unpaid"
CANCELED_STATUS: Final = "canceled"
CANCELED_CODE: Final = "subscription_canceled"  # the 409 of a change to a canceled subscription
STATUSES = (INCOMPLETE, TRIALING, ACTIVE, PAST_DUE, UNPAID, CANCELED_STATUS)

# The only moves between statuses (a status "moving" to itself is no move at all).
MOVES: Mapping[str, frozenset[str]] = {
    INCOMPLETE: frozenset({ACTIVE, CANCELED_STATUS}),
    TRIALING: frozenset({ACTIVE, PAST_DUE, UNPAID, CANCELED_STATUS}),
    ACTIVE: frozenset({PAST_DUE, UNPAID, CANCELED_STATUS}),
    PAST_DUE: frozenset({ACTIVE, UNPAID, CANCELED_STATUS}),
    UNPAID: frozenset({ACTIVE, CANCELED_STATUS}),
    CANCELED_STATUS: frozenset(),
}

# Fields a change may carry (the provider's answer may add `status` and the period bounds).
CHANGEABLE = (
    "quantity",
    "amount",
    "currency",
    "interval",
    "interval_count",
    "price",
    "cancel_at_period_end",
    "metadata",
    "status",
    "current_period_start",
    "current_period_end",
)


# What a provider's report may change.
REPORTED = ("status", "current_period_start", "current_period_end", "cancel_at_period_end", "quantity")

CANCEL_PARAMETER: Final = "at_period_end"  # a cancel request's one parameter (an update's are other names)


def stream_name(subscription_id: str) -> str:
    return f"subscription-{subscription_id}"


def creation_stream(subscription_id: str) -> str:
    return f"subscription-creation-{subscription_id}"


@dataclass(frozen=True)
class Subscription:
    id: str
    workspace: str
    customer_id: str
    status: str
    amount: int
    currency: str
    interval: str
    interval_count: int
    quantity: int
    current_period_start: str | None
    current_period_end: str | None
    provider: str
    created_at: str
    updated_at: str
    price: str | None = None
    trial_end: str | None = None
    cancel_at_period_end: bool = False
    canceled_at: str | None = None
    provider_reference: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    provider_event_at: str | None = None  # the provider's time of the latest report applied (not shown)
    pending_update: PendingChange | None = None  # an update requested, its outcome not recorded yet (not shown)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "subscription",
            "customer_id": self.customer_id,
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "interval": self.interval,
            "interval_count": self.interval_count,
            "quantity": self.quantity,
            "price": self.price,
            "current_period_start": self.current_period_start,
            "current_period_end": self.current_period_end,
            "trial_end": self.trial_end,
            "cancel_at_period_end": self.cancel_at_period_end,
            "canceled_at": self.canceled_at,
            "provider": self.provider,
            "provider_reference": self.provider_reference,
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class NewSubscription:
    """A create command with the provider's answer folded in (status, periods, reference)."""

    id: str
    workspace: str
    customer_id: str
    status: str
    amount: int
    currency: str
    interval: str
    interval_count: int
    quantity: int
    provider: str
    current_period_start: str | None
    current_period_end: str | None
    price: str | None = None
    trial_end: str | None = None
    provider_reference: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreationParameters:
    """What the customer's state decided of a creation's provider parameters when it was first attempted."""

    customer_reference: str | None
    default_payment_method: str | None  # None when the command gave its own payment method


def creation_parameters(events: Iterable[StoredEvent]) -> CreationParameters | None:
    """The parameters recorded by the first attempt (its stream's one event), or None before any attempt."""
    for event in events:
        if event.type == CREATION_REQUESTED:
            return CreationParameters(event.data["customer_reference"], event.data["default_payment_method"])
    return None


def decide_request_creation(parameters: CreationParameters) -> DomainEvent:
    return DomainEvent(CREATION_REQUESTED, asdict(parameters))


@dataclass(frozen=True)
class SubscriptionChanges:
    """A PUT with the provider's answer: only the fields present (see CHANGEABLE); metadata is merged."""

    values: Mapping[str, Any] = field(default_factory=dict)


def fold(events: Iterable[StoredEvent]) -> Subscription | None:
    subscription: Subscription | None = None
    for event in events:
        subscription = evolve(subscription, event)
    return subscription


def evolve(subscription: Subscription | None, event: StoredEvent) -> Subscription | None:
    data = event.data
    if event.type == CREATED:
        fields = {name: data[name] for name in NewSubscription.__dataclass_fields__ if name in data}
        fields["metadata"] = dict(data.get("metadata") or {})
        return Subscription(**fields, created_at=data["created_at"], updated_at=data["created_at"])
    if subscription is None:
        return None
    if event.type in (UPDATE_REQUESTED, CANCEL_REQUESTED):
        return replace(subscription, pending_update=PendingChange.of(data))
    if event.type == UPDATED:
        updated = replace(
            subscription, **known_changes(subscription, data.get("changes")), updated_at=data["updated_at"]
        )
        return without_finished(with_cancel_time(subscription, with_cancel_request_time(subscription, updated)), data)
    if event.type == UPDATE_FAILED:
        return without_finished(subscription, data)
    if event.type == STATUS_CHANGED:
        changes = known_changes(subscription, data.get("changes"))
        changed = replace(
            subscription, **changes, updated_at=data["updated_at"], provider_event_at=data["provider_created"]
        )
        return with_cancel_request_time(subscription, changed)
    if event.type == REPORT_NOTED:
        return replace(subscription, provider_event_at=data["provider_created"])
    if event.type == CANCEL_SCHEDULED:
        scheduled = replace(subscription, cancel_at_period_end=True, updated_at=data["updated_at"])
        return without_finished(with_cancel_request_time(subscription, scheduled), data)
    if event.type == CANCELED:
        # The period end of a cancel asked earlier keeps the time it was asked; a cancel now is its own request.
        asked_at = subscription.canceled_at if subscription.cancel_at_period_end and "command_id" not in data else None
        canceled = replace(
            subscription,
            status=CANCELED_STATUS,
            canceled_at=asked_at or data["canceled_at"],
            cancel_at_period_end=False,
            updated_at=data["canceled_at"],
            provider_event_at=data.get("provider_created", subscription.provider_event_at),
        )
        return without_finished(canceled, data)
    return subscription


def with_cancel_time(before: Subscription, after: Subscription) -> Subscription:
    """An update whose answer shows the subscription canceled (at the provider, before the update reached it) is
    its cancellation: `canceled_at` then, or when a cancel at the period end was asked, as a cancel records it."""
    if after.status != CANCELED_STATUS or before.status == CANCELED_STATUS:
        return after
    return replace(after, canceled_at=before.canceled_at or after.updated_at, cancel_at_period_end=False)


def with_cancel_request_time(before: Subscription, after: Subscription) -> Subscription:
    """Stripe's `canceled_at` for a cancel at period end: the time it was asked (the change's `updated_at`), kept
    once the period ends; none again once it is taken back."""
    if after.cancel_at_period_end == before.cancel_at_period_end or after.status == CANCELED_STATUS:
        return after
    return replace(after, canceled_at=after.updated_at if after.cancel_at_period_end else None)


def visible(subscription: Subscription | None, workspace: str) -> Subscription:
    if subscription is None or subscription.workspace != workspace:
        raise not_found("subscription")
    return subscription


def check_period_amount(amount: int, quantity: int, param: str) -> None:
    """What one period bills (amount × quantity) is one charge: at most MAX_AMOUNT. 400 naming `param`."""
    if amount * quantity > MAX_AMOUNT:
        raise invalid(
            f"amount × quantity ({amount} × {quantity} = {amount * quantity}) is more than one period may bill, "
            f"{MAX_AMOUNT}.",
            param=param,
        )


def changeable(subscription: Subscription | None, workspace: str, metadata_only: bool = False) -> Subscription:
    """The subscription if it may still change: not found → 404, canceled → 409 unless only its metadata changes
    (as at Stripe)."""
    current = visible(subscription, workspace)
    if current.status == CANCELED_STATUS and not metadata_only:
        message = f"Subscription {current.id} is canceled: only its metadata can change."
        raise conflict(message, code=CANCELED_CODE)
    return current


def changes_metadata_only(parameters: Mapping[str, Any]) -> bool:
    """Whether an update's parameters change its metadata and nothing else (a cancel's never do)."""
    billing = SUBSCRIPTION_BILLING_FIELDS
    return parameters.get("metadata") is not None and all(parameters.get(name) is None for name in billing)


def check_move(current: str, new: str) -> None:
    if new not in STATUSES:
        raise invalid(f"Unknown subscription status {new!r}.", param="status")
    if new != current and new not in MOVES[current]:
        raise conflict(f"A subscription cannot go from {current} to {new}.", code="invalid_status_transition")


def decide_create(existing: Subscription | None, new: NewSubscription, now: str) -> DomainEvent:
    if existing is not None:
        raise conflict(f"Subscription {new.id} already exists.")
    if new.status not in STATUSES or new.status == CANCELED_STATUS:
        raise invalid(f"A subscription cannot start as {new.status!r}.", param="status")
    data = {name: getattr(new, name) for name in NewSubscription.__dataclass_fields__}
    data["metadata"] = merged_metadata({}, new.metadata)  # "" sets no key, as at Stripe
    data["created_at"] = now
    return DomainEvent(CREATED, data)


def decide_request_update(subscription: Subscription | None, workspace: str, pending: PendingChange) -> DomainEvent:
    """Record an update as requested before its provider is asked: one at a time (409 while another is open)."""
    current = changeable(subscription, workspace, changes_metadata_only(pending.parameters))
    if current.status == INCOMPLETE and _changes_billing(current, pending.parameters):
        message = (
            f"Subscription {current.id} is incomplete: until its first payment succeeds only its metadata and "
            "cancel_at_period_end can change (as at Stripe). Cancel it and create another to bill differently."
        )
        raise conflict(message, code="subscription_incomplete")
    return _requested(UPDATE_REQUESTED, current, workspace, pending)


def _changes_billing(current: Subscription, parameters: Mapping[str, Any]) -> bool:
    """Whether an update would change what a period bills (quantity, amount or price)."""
    now_billed = {"quantity": current.quantity, "amount": current.amount, "price": current.price}
    return any(parameters.get(name) not in (None, value) for name, value in now_billed.items())


def decide_request_cancel(
    subscription: Subscription | None, workspace: str, at_period_end: bool, now: str, command_id: str
) -> DomainEvent:
    """Record a cancel as requested before its provider is asked, one change at a time like updates."""
    pending = PendingChange(command_id, now, {CANCEL_PARAMETER: at_period_end}, {})
    return _requested(CANCEL_REQUESTED, subscription, workspace, pending)


def _requested(
    event_type: str, subscription: Subscription | None, workspace: str, pending: PendingChange
) -> DomainEvent:
    current = changeable(subscription, workspace, changes_metadata_only(pending.parameters))
    if current.pending_update is not None:
        raise conflict("Another change of this subscription is in progress; retry.", code="operation_in_progress")
    return DomainEvent(event_type, pending.to_data())


def is_cancel(pending: PendingChange) -> bool:
    """Whether the open request is a cancel (its only parameter, `at_period_end`), not an update."""
    return CANCEL_PARAMETER in pending.parameters


def decide_update(
    subscription: Subscription | None,
    workspace: str,
    changes: SubscriptionChanges,
    now: str,
    command_id: str | None = None,
    metadata_only: bool = False,
) -> DomainEvent:
    """The update with the provider's answer; `command_id` names the request it finishes. A canceled subscription
    takes only new metadata (`metadata_only`: what the request changed), whatever else the provider reports."""
    current = changeable(subscription, workspace, metadata_only)
    values = {name: value for name, value in changes.values.items() if name in CHANGEABLE}
    if current.status == CANCELED_STATUS:
        values = {name: value for name, value in values.items() if name == "metadata"}
    if "status" in values:
        check_move(current.status, values["status"])
    if "metadata" in values:
        values["metadata"] = merged_metadata_within_limit(current.metadata, values["metadata"])
    values.update(_new_cycle(current, values, now))
    finished = {"command_id": command_id} if command_id else {}
    return DomainEvent(UPDATED, {"changes": values, "updated_at": now, **finished})


def _stays_in_trial(current: Subscription, values: Mapping[str, Any]) -> bool:
    return current.status == TRIALING and values.get("status", TRIALING) == TRIALING


def _new_cycle(current: Subscription, values: Mapping[str, Any], now: str) -> dict[str, str]:
    """A change of billing interval (a price of another interval) starts a new period now, as Stripe does; when
    the provider reported the new period, that is kept. During a trial the period is the trial, and Stripe keeps
    its end: the new interval only starts once the trial is over."""
    interval = values.get("interval", current.interval)
    interval_count = values.get("interval_count", current.interval_count)
    if (interval, interval_count) == (current.interval, current.interval_count) or "current_period_start" in values:
        return {}
    if _stays_in_trial(current, values):
        return {}
    period = periods.nth_period(parse_iso(now), interval, interval_count, 0)
    return {"current_period_start": api_timestamp(period.start), "current_period_end": api_timestamp(period.end)}


def decide_cancel(subscription: Subscription | None, workspace: str, pending: PendingChange, now: str) -> DomainEvent:
    """The outcome of the cancel `pending`, which the provider carried out. A subscription canceled meanwhile (the
    provider's report of this very cancellation applied first) stays as that report left it: the cancel is
    finished with it, and succeeded."""
    current = visible(subscription, workspace)
    finished = {"command_id": pending.command_id}
    if current.status == CANCELED_STATUS:
        return DomainEvent(CANCELED, {"canceled_at": current.canceled_at or now, **finished})
    if pending.parameters[CANCEL_PARAMETER]:
        return DomainEvent(CANCEL_SCHEDULED, {"cancel_at_period_end": True, "updated_at": now, **finished})
    return DomainEvent(CANCELED, {"canceled_at": now, **finished})


def _reportable(name: str, value: Any) -> bool:
    """A reported value that fits the field (a provider's payload is JSON from outside: anything may be there)."""
    if name == "quantity":
        return type(value) is int and 1 <= value <= MAX_QUANTITY
    if name == "cancel_at_period_end":
        return type(value) is bool
    return isinstance(value, str)  # the status (checked against the diagram) and the period bounds


def decide_reported(
    subscription: Subscription | None, workspace: str, reported: Mapping[str, Any], provider_created: str, now: str
) -> DomainEvent | None:
    """What the provider reports later (a webhook: renewal, failed invoice, cancellation), as the event to record,
    or None when there is nothing to record: a report older than one already applied or noted (reports apply in
    the provider's own order), or a subscription already canceled. A newer report that changes nothing (no
    change, or a move the status machine forbids) is noted, so that older ones are not applied over it. A
    cancellation applies however late it comes: nothing after it at the provider can have undone it."""
    current = visible(subscription, workspace)
    if current.status == CANCELED_STATUS:
        return None
    older = current.provider_event_at is not None and provider_created < current.provider_event_at
    if older and reported.get("status") != CANCELED_STATUS:
        return None
    noted = DomainEvent(REPORT_NOTED, {"provider_created": provider_created})
    status = reported.get("status", current.status)
    if status not in STATUSES or (status != current.status and status not in MOVES[current.status]):
        return noted
    if status == CANCELED_STATUS:
        return DomainEvent(CANCELED, {"canceled_at": now, "provider_created": provider_created})
    changes: dict[str, Any] = {
        name: value
        for name, value in reported.items()
        if name in REPORTED and _reportable(name, value) and value != getattr(current, name)
    }
    if not changes:
        return noted if provider_created != current.provider_event_at else None
    return DomainEvent(STATUS_CHANGED, {"changes": changes, "updated_at": now, "provider_created": provider_created})
