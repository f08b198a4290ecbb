"""An operator's decision on a payment whose re-drive was left unresolved: the provider holds several objects (or one
another open payment may have made) that may be its earlier attempt's, so the re-drive created nothing and adopted
nothing (`ProviderCallFailed` with `unresolved`: the candidates). Pure.

The decision is one event (`PaymentResolvedByOperator`: who, which choice, the candidates it chose among) and the
payment's outcome follows from it, appended with it through the normal outcome decision:
- `adopt` one candidate: the provider's present answer about it (read by the caller) is the payment's outcome, as if
  the re-drive had found it alone;
- `not_made`: none of them is this payment's, so its earlier attempts made nothing. The payment FAILS
  (`payment_not_made`) rather than being created now: a payment made a day or more after the client asked, on an
  operator's word alone, charges the customer again if that word is wrong (and the candidates are typically the
  same order paid under another key, so the customer has paid already); a failure moves no money, the client sees
  it and pays again under a new Idempotency-Key if it still wants to.

Deciding again what was decided is a no-op (no events); anything else on a payment that is not awaiting a decision,
a candidate that was not among the unresolved ones, or one another transaction recorded is refused. So is any
decision while a re-drive of the payment is under way (`PaymentRedriveStarted`, nothing recorded since): once the
candidates it was left with are decided for the other payments, that re-drive may adopt or create the payment at the
provider; a decision recorded meanwhile would be the payment's outcome and the re-drive's, money moved included,
would be dropped. The operator decides once it has answered (its outcome, or unresolved again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from payments_shared.providers.port import Outcome, ProviderResult

from payments_transactions.domain import events as ev
from payments_transactions.domain.decisions import DomainError, payment_outcome
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.state import Operation, Transaction

NOT_MADE_CODE: Final = "payment_not_made"
NOT_MADE_MESSAGE: Final = (
    "The payment was not made: an operator found that no attempt of it reached the provider. Nothing was charged; "
    "pay again with a new Idempotency-Key."
)


class Choice(StrEnum):
    ADOPT = "adopt"
    NOT_MADE = "not_made"


@dataclass(frozen=True)
class Resolution:
    operator: str
    choice: Choice
    reference: str | None = None  # the adopted candidate (ADOPT only)
    note: str | None = None

    def __post_init__(self) -> None:
        if not self.operator.strip():
            raise ValueError("an operator's decision names the operator")
        if (self.choice is Choice.ADOPT) != bool(self.reference):
            raise ValueError("adopting names the one candidate adopted, and only adopting does")


def candidates(operation: Operation) -> list[str]:
    """The provider objects the payment's last re-drive could not choose between (empty: not awaiting a decision)."""
    failure = operation.last_failure or {}
    unresolved = failure.get("unresolved") if not operation.finished else None
    return [str(reference) for reference in unresolved] if isinstance(unresolved, list) else []


def already_decided(transaction: Transaction, resolution: Resolution) -> bool:
    """This very decision is recorded (asking again is a no-op)."""
    recorded = transaction.payment.resolution
    return (
        recorded is not None
        and recorded.get("choice") == resolution.choice.value
        and recorded.get("provider_reference") == resolution.reference
    )


def check(transaction: Transaction, resolution: Resolution, owner: str | None, now: datetime) -> None:
    """Refuse a decision on a payment not awaiting one (a re-drive of it under way at `now` included), a candidate it
    was not left with, or one another transaction recorded (`owner`: the transaction the provider's object belongs
    to, if any). Before the provider is read."""
    if already_decided(transaction, resolution):
        return
    operation = transaction.payment
    recorded = operation.resolution
    if recorded is not None:
        chosen = " ".join(str(part) for part in (recorded.get("choice"), recorded.get("provider_reference")) if part)
        raise DomainError(
            f"An operator already resolved this payment ({chosen}, by {recorded.get('operator')}).",
            code="already_resolved",
        )
    if operation.redrive_under_way(now):
        raise DomainError(
            "A re-drive of this payment is under way at the provider: it may adopt or make the payment now. Decide"
            " once it has answered (its outcome, or unresolved again).",
            code="redrive_under_way",
        )
    found = candidates(operation)
    if not found:
        why = "its outcome is recorded" if operation.finished else "its last attempt was not left unresolved"
        raise DomainError(
            f"This payment is not awaiting an operator's decision (status {transaction.status.value}: {why}).",
            code="not_unresolved",
        )
    if resolution.choice is Choice.ADOPT:
        if resolution.reference not in found:
            raise DomainError(
                f"{resolution.reference} is not one of the candidates left unresolved: {', '.join(found)}.",
                code="not_a_candidate",
            )
        if owner is not None and owner != transaction.id:
            raise DomainError(
                f"{resolution.reference} is transaction {owner}'s: one provider object is never two transactions'.",
                code="owned_by_another_transaction",
            )


def resolve(
    transaction: Transaction,
    resolution: Resolution,
    owner: str | None,
    adopted: ProviderResult | None,
    now: datetime,
) -> list[DomainEvent]:
    """The decision and the payment's outcome it leads to (none when it is recorded already). `adopted`: the
    provider's present answer about the adopted candidate (ADOPT only)."""
    if already_decided(transaction, resolution):
        return []
    check(transaction, resolution, owner, now)
    operation = transaction.payment
    decided: dict[str, Any] = {
        "command_id": operation.command_id,
        "operator": resolution.operator,
        "choice": resolution.choice.value,
        "provider_reference": resolution.reference,
        "candidates": candidates(operation),
        "note": resolution.note,
    }
    if resolution.choice is Choice.NOT_MADE:
        return [DomainEvent(ev.PAYMENT_RESOLVED_BY_OPERATOR, decided), _not_made(operation)]
    if adopted is None or adopted.reference != resolution.reference:
        raise ValueError("adopting records the provider's answer about the adopted candidate")
    if adopted.outcome in (Outcome.RETRYABLE, Outcome.UNAVAILABLE):
        raise DomainError(
            f"The provider's state of {resolution.reference} could not be read: nothing recorded, try again.",
            code="provider_unavailable",
        )
    return [DomainEvent(ev.PAYMENT_RESOLVED_BY_OPERATOR, decided), payment_outcome(transaction, adopted)]


def _not_made(operation: Operation) -> DomainEvent:
    error: Mapping[str, Any] = {"type": "provider_error", "code": NOT_MADE_CODE, "message": NOT_MADE_MESSAGE}
    data = {
        "command_id": operation.command_id,
        "provider_reference": None,
        "details": {},
        "failure_code": NOT_MADE_CODE,
        "error": dict(error),
    }
    return DomainEvent(ev.PAYMENT_FAILED, data)
