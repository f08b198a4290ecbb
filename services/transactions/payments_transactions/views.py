"""What clients see: the transaction JSON of API.md and the worker's replies, as pure functions of the stream
(so a replay of a recorded outcome is byte-identical to the first answer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from payments_shared.errors import REDRIVE_UNRESOLVED, ApiError
from payments_shared.eventstore.port import RecordedEvent
from payments_shared.messages import Reply, public_metadata

from payments_transactions.domain.state import Operation, OperationKind, Refund, Transaction


def transaction_json(transaction: Transaction) -> dict[str, Any]:
    return {
        "id": transaction.id,
        "object": "transaction",
        "workspace": transaction.workspace,
        "status": transaction.status.value,
        "amount": transaction.amount,
        "currency": transaction.currency,
        "amount_authorized": transaction.amount_authorized,
        "amount_captured": transaction.amount_captured,
        "amount_refunded": transaction.amount_refunded,
        "provider": transaction.provider,
        "provider_reference": transaction.provider_reference,
        "customer_id": transaction.customer_id,
        "description": transaction.description,
        "metadata": dict(transaction.metadata),
        "refunds": [refund_json(refund) for refund in transaction.refunds],
        "failure_code": transaction.failure_code,
        "failure_message": transaction.failure_message,
        "next_action": dict(transaction.next_action) if transaction.next_action is not None else None,
        "created_at": transaction.created_at,
        "updated_at": transaction.updated_at,
        "dispute": dispute_json(transaction.dispute),  # an extension (API.md allows them)
    }


def refund_json(refund: Refund) -> dict[str, Any]:
    shown = {"id": refund.id, "amount": refund.amount, "status": refund.status, "created_at": refund.created_at}
    if refund.failure_reason is not None:  # as Stripe's Refund: only once it failed at the provider
        shown["failure_reason"] = refund.failure_reason
    return shown


def dispute_json(dispute: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The latest dispute a provider reported on the payment, or null."""
    if dispute is None:
        return None
    return {name: dispute.get(name) for name in ("status", "reason", "amount", "created_at")}


def events_json(recorded: Sequence[RecordedEvent]) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": event.type,
                "data": dict(event.data),
                "metadata": public_metadata(event.metadata),
                "stream_version": event.version,
                "position": event.position,
            }
            for event in recorded
        ]
    }


def error_reply(error: ApiError) -> dict[str, Any]:
    return Reply(status=error.status, body=error.body(), headers=error.headers()).to_body()


def stored_error(error: Mapping[str, Any], transaction_id: str) -> ApiError:
    return ApiError(
        error["type"],
        error["message"],
        code=error.get("code"),
        param=error.get("param"),
        transaction_id=transaction_id,
        decline_code=error.get("decline_code"),
    )


def outcome_reply(recorded: Sequence[RecordedEvent], operation: Operation) -> dict[str, Any]:
    """The answer to a finished operation: the transaction as it stood right after the outcome's append (or its
    error)."""
    if operation.outcome_version is None:
        raise ValueError("the operation has no outcome yet")
    as_of = Transaction.from_events(recorded[: _outcome_end(recorded, operation.outcome_version)])
    if as_of is None:
        raise ValueError("empty stream")
    if operation.error is not None:
        return error_reply(stored_error(operation.error, as_of.id))
    status = 201 if operation.kind is OperationKind.PAYMENT else 200
    return Reply(status=status, body=transaction_json(as_of)).to_body()


def _outcome_end(recorded: Sequence[RecordedEvent], outcome_version: int) -> int:
    """Where the outcome's append ends: a refund's outcome comes with what the provider reports noted while it was
    under way add (domain.refund_reports, each event naming its `noted_report`), recorded at once with it."""
    end = outcome_version + 1
    while end < len(recorded) and "noted_report" in recorded[end].data:
        end += 1
    return end


def unavailable_error(transaction: Transaction, operation: Operation, retry_after_s: float | None = None) -> ApiError:
    """An operation whose last attempt failed retryably: 503, the transaction keeps its state meanwhile.
    `retry_after_s`: what is left of the failure's own `retry_after`, when it is not all of it."""
    failure = operation.last_failure or {}
    retry_after = retry_after_s if retry_after_s is not None else failure.get("retry_after")
    message = str(failure.get("message") or "The provider is unavailable.")
    return ApiError(
        "provider_unavailable",
        f"{message} Retry with the same Idempotency-Key.",
        code=REDRIVE_UNRESOLVED if failure.get("unresolved") else None,
        transaction_id=transaction.id,
        retry_after=float(retry_after) if retry_after else 1.0,
    )


def awaiting_decision(transaction: Transaction, operation: Operation, now: datetime) -> dict[str, Any] | None:
    """The answer to a retry of an operation whose last attempt was unresolved, while that answer's Retry-After
    lasts: the recorded 503 (with what is left of it), without asking the provider again or recording another
    failure. None when the provider should be asked."""
    until = operation.unresolved_until()
    if until is None or now >= until:
        return None
    return error_reply(unavailable_error(transaction, operation, (until - now).total_seconds()))


def operation_reply(recorded: Sequence[RecordedEvent], command_id: str) -> dict[str, Any]:
    """The answer once an operation was driven: its outcome, or 503 when its last attempt failed retryably."""
    transaction = Transaction.from_events(recorded)
    if transaction is None:
        raise ValueError("empty stream")
    operation = transaction.operations[command_id]
    if operation.finished:
        return outcome_reply(recorded, operation)
    return error_reply(unavailable_error(transaction, operation))
