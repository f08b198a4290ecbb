"""Decision functions: given the state and a request or a provider's answer, the events to append — or a
`DomainError` when API.md's state machine or amount rules forbid it. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

from payments_shared.metadata import merged_metadata
from payments_shared.providers.port import Outcome, ProviderResult

from payments_transactions.domain import events as ev
from payments_transactions.domain import refund_reports
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.state import Operation, OperationKind, Status, Transaction

ALLOWED_MOVES: Final[Mapping[Status, frozenset[Status]]] = {
    Status.PENDING: frozenset({Status.AUTHORIZED, Status.CAPTURED, Status.FAILED, Status.REQUIRES_ACTION}),
    Status.REQUIRES_ACTION: frozenset({Status.AUTHORIZED, Status.CAPTURED, Status.FAILED}),
    Status.AUTHORIZED: frozenset({Status.CAPTURED, Status.VOIDED}),
    Status.CAPTURED: frozenset({Status.PARTIALLY_REFUNDED, Status.REFUNDED}),
    Status.PARTIALLY_REFUNDED: frozenset({Status.PARTIALLY_REFUNDED, Status.REFUNDED}),
    Status.FAILED: frozenset(),
    Status.VOIDED: frozenset(),
    Status.REFUNDED: frozenset(),
}


class DomainError(Exception):
    """A request the rules forbid (answered 409 conflict)."""

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def can_move(current: Status, target: Status) -> bool:
    return target in ALLOWED_MOVES[current]


def _refuse(transaction: Transaction, action: str) -> NoReturn:
    raise DomainError(
        f"This transaction cannot be {action} because its status is {transaction.status.value}.",
        code="transaction_unexpected_state",
    )


def _require_move(transaction: Transaction, target: Status, action: str) -> None:
    if not can_move(transaction.status, target):
        _refuse(transaction, action)


def _require_no_open(transaction: Transaction, *kinds: OperationKind) -> None:
    for operation in transaction.open_operations():
        if operation.kind in kinds:
            raise DomainError(
                f"A {operation.kind.value} of this transaction is still being processed.", code="operation_in_progress"
            )


def request_payment(
    transaction_id: str,
    kind: str,
    amount: int,
    currency: str,
    provider: str,
    payment_method: Mapping[str, Any],
    customer_id: str | None,
    description: str | None,
    metadata: Mapping[str, str],
    command_id: str,
    message_id: str,
    fingerprint: str | None,
    customer_reference: str | None = None,
) -> DomainEvent:
    """The first event of a transaction. `payment_method` is a safe description: never Accept.js data_value."""
    if kind not in ("charge", "authorize"):
        raise ValueError(f"unknown payment kind {kind!r}")
    data = {
        "transaction_id": transaction_id,
        "kind": kind,
        "amount": amount,
        "currency": currency,
        "provider": provider,
        "payment_method": dict(payment_method),
        "customer_id": customer_id,
        "customer_reference": customer_reference,
        "description": description,
        "metadata": merged_metadata({}, metadata),  # "" sets no key, as at Stripe
        "command_id": command_id,
        "message_id": message_id,
        "fingerprint": fingerprint,
    }
    return DomainEvent(ev.TRANSACTION_REQUESTED, data)


def provider_not_configured(provider: str) -> dict[str, Any]:
    """API.md's error fields for a payment naming a provider this worker has no adapter (or no credentials) for."""
    return {
        "type": "invalid_request_error",
        "code": "provider_not_configured",
        "message": f"The provider {provider!r} is unknown or not configured.",
        "param": "provider",
    }


def refuse_payment(requested: DomainEvent, error: Mapping[str, Any]) -> list[DomainEvent]:
    """A payment the worker cannot carry out (nothing is sent to any provider): its request and its failure, the
    transaction's first events, appended together. A client answered 202 `pending` so finds it `failed` and why;
    a repeat with the same Idempotency-Key replays the refusal. `error`: API.md's error fields of a 4xx (naming
    the field when one is at fault), never a secret or card data."""
    if requested.type != ev.TRANSACTION_REQUESTED:
        raise ValueError(f"a refused payment starts with {ev.TRANSACTION_REQUESTED}, not {requested.type}")
    return [requested, refusal(requested.data["command_id"], error)]


def refusal(command_id: str, error: Mapping[str, Any]) -> DomainEvent:
    """The failure of a payment the worker refuses without asking a provider (`refuse_payment`; or found only once
    its request was recorded). `error`: API.md's error fields of the 4xx it is answered."""
    data = {
        "command_id": command_id,
        "provider_reference": None,
        "details": {},
        "failure_code": failure_code(error),
        "error": dict(error),
    }
    return DomainEvent(ev.PAYMENT_FAILED, data)


def request_capture(
    transaction: Transaction, command_id: str, amount: int | None, message_id: str, fingerprint: str | None
) -> DomainEvent:
    """Capture all that is authorized (default) or less (the rest is released); never more."""
    _require_move(transaction, Status.CAPTURED, "captured")
    if transaction.status is not Status.AUTHORIZED:  # pending → captured is the charge's own move, not a capture
        _refuse(transaction, "captured")
    _require_no_open(transaction, OperationKind.CAPTURE, OperationKind.VOID)
    to_capture = transaction.amount_authorized if amount is None else amount
    if to_capture > transaction.amount_authorized:
        raise DomainError(
            f"The capture amount ({to_capture}) is greater than the authorized amount "
            f"({transaction.amount_authorized}).",
            code="amount_too_large",
        )
    data = {"command_id": command_id, "amount": to_capture, "message_id": message_id, "fingerprint": fingerprint}
    return DomainEvent(ev.CAPTURE_REQUESTED, data)


def request_void(transaction: Transaction, command_id: str, message_id: str, fingerprint: str | None) -> DomainEvent:
    """Only an authorized transaction with no capture under way can be voided."""
    _require_move(transaction, Status.VOIDED, "voided")
    _require_no_open(transaction, OperationKind.CAPTURE, OperationKind.VOID)
    data = {"command_id": command_id, "message_id": message_id, "fingerprint": fingerprint}
    return DomainEvent(ev.VOID_REQUESTED, data)


# Stripe refuses to refund a disputed charge (`charge_disputed`); an inquiry (`warning_…`) or a won dispute does not
# stop a refund.
DISPUTE_BLOCKS_REFUNDS: Final = frozenset({"needs_response", "under_review", "lost"})


def request_refund(
    transaction: Transaction,
    command_id: str,
    refund_id: str,
    amount: int | None,
    reason: str | None,
    message_id: str,
    fingerprint: str | None,
) -> DomainEvent:
    """Refund all that remains refundable (default) or less; refunds still pending count as refunded."""
    if transaction.status is Status.REFUNDED and transaction.refundable <= 0:
        raise DomainError("This transaction has already been refunded in full.", code="charge_already_refunded")
    if transaction.status is not Status.REFUNDED:  # refundable again after a refund the provider failed
        _require_move(transaction, Status.REFUNDED, "refunded")
    if transaction.dispute is not None and transaction.dispute.get("status") in DISPUTE_BLOCKS_REFUNDS:
        raise DomainError(
            "This charge is disputed: it cannot be refunded while the dispute is open, nor after it is lost.",
            code="charge_disputed",
        )
    refundable = transaction.refundable
    if refundable <= 0:
        raise DomainError("This transaction has nothing left to refund.", code="charge_already_refunded")
    to_refund = refundable if amount is None else amount
    if to_refund > refundable:
        raise DomainError(
            f"The refund amount ({to_refund}) is greater than the refundable amount ({refundable}).",
            code="amount_too_large",
        )
    data = {
        "command_id": command_id,
        "refund_id": refund_id,
        "amount": to_refund,
        "reason": reason,
        "message_id": message_id,
        "fingerprint": fingerprint,
    }
    return DomainEvent(ev.REFUND_REQUESTED, data)


# ---- outcomes: what a provider's answer to an open operation records -------------------------------------


def decline_error(result: ProviderResult) -> dict[str, Any]:
    return {
        "type": "card_error",
        "code": "card_declined",
        "message": result.message or "Your card was declined.",
        "decline_code": result.decline_code or "generic_decline",
    }


def permanent_error(result: ProviderResult) -> dict[str, Any]:
    """PERMANENT with details `invalid_param` is the provider refusing a parameter (400), with `conflict` (a code)
    refusing it in the payment's present state (409: e.g. a partial refund before settlement); else a 502."""
    param = result.details.get("invalid_param")
    if param:
        message = result.message or f"The provider refused the {param}."
        return {"type": "invalid_request_error", "code": result.refusal_code, "message": message, "param": param}
    conflict = result.details.get("conflict")
    if conflict:
        message = result.message or "The payment's present state at the provider does not allow this."
        return {"type": "conflict", "code": str(conflict), "message": message}
    message = result.message or "The provider could not process this request."
    return {"type": "provider_error", "code": "processing_error", "message": message}


def unexpected_error(result: ProviderResult) -> dict[str, Any]:
    message = f"The provider answered {result.outcome.value}, which this operation does not expect."
    return {"type": "provider_error", "code": "unexpected_provider_answer", "message": message}


def failure_code(error: Mapping[str, Any]) -> str:
    if error["type"] == "card_error":
        return str(error.get("decline_code") or error["code"])
    if error["type"] == "invalid_request_error":
        return f"invalid_{error.get('param', 'request')}"
    return str(error["code"])


def provider_call_failed(operation: Operation, result: ProviderResult) -> DomainEvent:
    """A retryable failure (or an open breaker): recorded, the operation stays open for a later attempt."""
    data: dict[str, Any] = {
        "command_id": operation.command_id,
        "operation": operation.kind.value,
        "outcome": result.outcome.value,
        "message": result.message or "The provider is unavailable.",
        "retry_after": result.retry_after,
    }
    if result.unresolved:  # the provider's objects an operator must choose between: in the audit trail
        data["unresolved"] = result.candidates
    return DomainEvent(ev.PROVIDER_CALL_FAILED, data)


def redrive_started(operation: Operation) -> DomainEvent:
    """A payment re-drive that may adopt or create the payment at the provider is about to ask it (events.py)."""
    return DomainEvent(ev.PAYMENT_REDRIVE_STARTED, {"command_id": operation.command_id})


def _is_retryable(result: ProviderResult) -> bool:
    return result.outcome in (Outcome.RETRYABLE, Outcome.UNAVAILABLE)


def _require_open(operation: Operation) -> None:
    if operation.finished:
        raise DomainError(f"The {operation.kind.value} already has an outcome.")


def payment_outcome(transaction: Transaction, result: ProviderResult) -> DomainEvent:
    operation = transaction.payment
    _require_open(operation)
    if _is_retryable(result):
        return provider_call_failed(operation, result)
    base: dict[str, Any] = {
        "command_id": operation.command_id,
        "provider_reference": result.reference,
        "details": dict(result.details),
    }
    if result.outcome is Outcome.APPROVED:
        captured = transaction.kind == "charge"
        amount = result.amount if result.amount is not None else transaction.amount
        return DomainEvent(ev.PAYMENT_CAPTURED if captured else ev.PAYMENT_AUTHORIZED, {**base, "amount": amount})
    if result.outcome is Outcome.REQUIRES_ACTION:
        return DomainEvent(ev.PAYMENT_REQUIRES_ACTION, {**base, "next_action": dict(result.next_action or {})})
    if result.outcome is Outcome.PENDING_REVIEW:
        return DomainEvent(ev.PAYMENT_HELD_FOR_REVIEW, {**base, "message": result.message or "Held for review."})
    error = decline_error(result) if result.outcome is Outcome.DECLINED else permanent_error(result)
    return DomainEvent(ev.PAYMENT_FAILED, {**base, "failure_code": failure_code(error), "error": error})


def _follow_up_error(result: ProviderResult) -> dict[str, Any]:
    if result.outcome is Outcome.DECLINED:
        return decline_error(result)
    if result.outcome is Outcome.PERMANENT:
        return permanent_error(result)
    return unexpected_error(result)


def capture_outcome(transaction: Transaction, command_id: str, result: ProviderResult) -> DomainEvent:
    operation = transaction.operations[command_id]
    _require_open(operation)
    if _is_retryable(result):
        return provider_call_failed(operation, result)
    if result.outcome is Outcome.APPROVED:
        amount = operation.amount or 0
        released = transaction.amount_authorized - amount
        data = {"command_id": command_id, "amount": amount, "released": released, "details": dict(result.details)}
        return DomainEvent(ev.CAPTURE_SUCCEEDED, data)
    return DomainEvent(ev.CAPTURE_FAILED, {"command_id": command_id, "error": _follow_up_error(result)})


def void_outcome(transaction: Transaction, command_id: str, result: ProviderResult) -> DomainEvent:
    operation = transaction.operations[command_id]
    _require_open(operation)
    if _is_retryable(result):
        return provider_call_failed(operation, result)
    if result.outcome is Outcome.APPROVED:
        return DomainEvent(ev.VOID_SUCCEEDED, {"command_id": command_id, "released": transaction.amount_authorized})
    return DomainEvent(ev.VOID_FAILED, {"command_id": command_id, "error": _follow_up_error(result)})


def refund_outcome(transaction: Transaction, command_id: str, result: ProviderResult) -> DomainEvent:
    operation = transaction.operations[command_id]
    _require_open(operation)
    if _is_retryable(result):
        return provider_call_failed(operation, result)
    base = {"command_id": command_id, "refund_id": operation.refund_id}
    if result.outcome is Outcome.APPROVED:
        data = {**base, "provider_reference": result.reference}
        if result.details.get("pending"):
            data["provider_status"] = "pending"  # accepted; the provider says later whether it reached the customer
        return DomainEvent(ev.REFUND_SUCCEEDED, data)
    return DomainEvent(ev.REFUND_FAILED, {**base, "error": _follow_up_error(result)})


def refund_outcome_events(transaction: Transaction, command_id: str, result: ProviderResult) -> list[DomainEvent]:
    """The refund's outcome, then what the provider's refund reports noted while it was under way add: appended
    together, so that neither is ever recorded without the other."""
    outcome = refund_outcome(transaction, command_id, result)
    settled = refund_reports.settled_by(transaction, command_id, outcome)
    return [outcome, *settled, *refund_reports.statuses_settled_by(transaction, command_id, outcome, settled)]
