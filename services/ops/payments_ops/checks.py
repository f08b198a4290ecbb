"""Domain rules checked against stored history, one checker per kind of stream.

Each checker folds the stream with the owning service's own fold (event by event) and checks every step
against that service's state diagram (`ALLOWED_MOVES`, `MOVES`) and amount rules, so a rule lives in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Final

from payments_billing import customer, subscription
from payments_shared.eventstore.port import RecordedEvent
from payments_transactions.domain import events as transaction_events
from payments_transactions.domain.decisions import can_move
from payments_transactions.domain.state import Transaction

from payments_ops.objects import is_time


@dataclass(frozen=True)
class Violation:
    stream: str
    version: int | None
    event_type: str | None
    message: str

    def __str__(self) -> str:
        where = f" v{self.version} {self.event_type}" if self.version is not None else ""
        return f"{self.stream}{where}: {self.message}"


Checker = Callable[[Sequence[RecordedEvent]], list[Violation]]


def _violation(event: RecordedEvent, message: str) -> Violation:
    return Violation(event.stream, event.version, event.type, message)


def event_types(module: ModuleType) -> frozenset[str]:
    """The event types a domain module names (its upper-case constants spelled like `PaymentCaptured`)."""
    return frozenset(
        value
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and value[:1].isupper() and value.isalpha()
    )


TRANSACTION_TYPES: Final = event_types(transaction_events)
CUSTOMER_TYPES: Final = event_types(customer)
SUBSCRIPTION_TYPES: Final = event_types(subscription)


def well_formed(events: Sequence[RecordedEvent], known: frozenset[str]) -> list[Violation]:
    """What every stream owes before its rules: one workspace, versions 0, 1, 2… without a gap, event types its
    service knows (one it does not would be skipped by every fold), and an `occurred_at` that is a time."""
    first = events[0].metadata.get("workspace")
    found = [
        _violation(event, f"workspace {event.metadata.get('workspace')!r} differs from the stream's {first!r}")
        for event in events[1:]
        if event.metadata.get("workspace") != first
    ]
    gap = next(((index, event) for index, event in enumerate(events) if event.version != index), None)
    if gap is not None:
        due, event = gap
        found.append(_violation(event, f"version {event.version} where {due} was due: a gap in the stream"))
    found.extend(
        _violation(event, "an event type its service does not know") for event in events if event.type not in known
    )
    for event in events:
        occurred = event.metadata.get("occurred_at")
        if occurred is not None and not (isinstance(occurred, str) and is_time(occurred)):
            found.append(_violation(event, f"occurred_at {str(occurred)[:40]!r} is not a time"))
    return found


def check_transaction(events: Sequence[RecordedEvent]) -> list[Violation]:
    violations = well_formed(events, TRANSACTION_TYPES)
    previous: Transaction | None = None
    for index, event in enumerate(events):
        try:
            current = Transaction.from_events(events[: index + 1])
        except Exception as error:  # a fold that fails is the violation (missing fields, unknown operation)
            return [*violations, _violation(event, f"cannot be folded: {type(error).__name__}: {error}")]
        if current is None:
            continue
        if previous is not None and current.status != previous.status and not can_move(previous.status, current.status):
            message = f"moves from {previous.status.value} to {current.status.value}, outside the state diagram"
            violations.append(_violation(event, message))
        not_amounts = _not_amounts(event, current)
        if not_amounts:
            return [*violations, *not_amounts]  # no sum can be taken of them, here or after
        violations.extend(_transaction_amounts(event, current))
        previous = current
    return violations


def _not_amounts(event: RecordedEvent, transaction: Transaction) -> list[Violation]:
    amounts = {
        "amount": transaction.amount,
        "amount_authorized": transaction.amount_authorized,
        "amount_captured": transaction.amount_captured,
        **{f"refund {refund.id}": refund.amount for refund in transaction.refunds},
    }
    return [
        _violation(event, f"not an amount: {name} {value!r}")
        for name, value in amounts.items()
        if not _is_amount(name, value)
    ]


def _transaction_amounts(event: RecordedEvent, transaction: Transaction) -> list[Violation]:
    found = []
    if transaction.amount_refunded > transaction.amount_captured:
        found.append(
            f"refunded {transaction.amount_refunded} exceeds captured {transaction.amount_captured}",
        )
    elif transaction.refund_reserved > transaction.amount_captured:
        found.append(
            f"refunds requested {transaction.refund_reserved} exceed captured {transaction.amount_captured}",
        )
    if transaction.amount_captured > transaction.amount_authorized:
        found.append(f"captured {transaction.amount_captured} exceeds authorized {transaction.amount_authorized}")
    if transaction.amount_authorized > transaction.amount:
        found.append(f"authorized {transaction.amount_authorized} exceeds the amount {transaction.amount}")
    return [_violation(event, message) for message in found]


def _is_amount(name: str, value: object) -> bool:
    """A whole number, at least 1 for what was asked (the payment, each refund), at least 0 for what has moved."""
    lowest = 1 if name == "amount" or name.startswith("refund ") else 0
    return type(value) is int and value >= lowest


def check_customer(events: Sequence[RecordedEvent]) -> list[Violation]:
    violations = well_formed(events, CUSTOMER_TYPES)
    if events[0].type != customer.CREATED:
        violations.append(_violation(events[0], f"a customer stream starts with {customer.CREATED}"))
    state: customer.Customer | None = None
    for event in events:
        if state is not None and state.deleted:
            violations.append(_violation(event, "an event after the customer was deleted"))
        if state is not None and state.pending_update is not None and event.type == customer.DELETED:
            message = f"deleted while its update {state.pending_update.command_id} had no outcome"
            violations.append(_violation(event, message))
        try:
            state = customer.evolve(state, event)
        except Exception as error:
            return [*violations, _violation(event, f"cannot be folded: {type(error).__name__}: {error}")]
    return violations


def check_subscription(events: Sequence[RecordedEvent]) -> list[Violation]:
    violations = well_formed(events, SUBSCRIPTION_TYPES)
    if events[0].type != subscription.CREATED:
        violations.append(_violation(events[0], f"a subscription stream starts with {subscription.CREATED}"))
    state: subscription.Subscription | None = None
    for event in events:
        try:
            after = subscription.evolve(state, event)
        except Exception as error:
            return [*violations, _violation(event, f"cannot be folded: {type(error).__name__}: {error}")]
        if state is not None and after is not None and _bad_move(state.status, after.status):
            message = f"moves from {state.status} to {after.status}, outside the state diagram"
            violations.append(_violation(event, message))
        state = after
    return violations


def _bad_move(before: str, after: str) -> bool:
    return after != before and after not in subscription.MOVES.get(before, frozenset())


# Object streams only: `customer-reference-…` and the like are lookups, not objects.
CHECKERS: Final[dict[str, Checker]] = {
    "transaction-txn_": check_transaction,
    "customer-cus_": check_customer,
    "subscription-sub_": check_subscription,
}


def checker_for(stream: str) -> Checker | None:
    for prefix, checker in CHECKERS.items():
        if stream.startswith(prefix):
            return checker
    return None
