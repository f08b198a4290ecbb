"""A transaction's state: a fold of its recorded events (pure; the same stream always gives the same state)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from payments_shared.eventstore.port import RecordedEvent
from payments_shared.timestamps import as_utc

from payments_transactions.domain import events as ev

# How long a started re-drive (`PaymentRedriveStarted`) that recorded nothing may still be at the provider: far above
# the driver's bound on one provider call with its retries (34 s with the defaults); past it, its worker has died.
REDRIVE_LASTS_AT_MOST: Final = timedelta(minutes=15)


class Status(StrEnum):
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDED = "voided"
    FAILED = "failed"


class OperationKind(StrEnum):
    PAYMENT = "payment"  # the creating charge/authorize
    CAPTURE = "capture"
    REFUND = "refund"
    VOID = "void"


@dataclass
class Operation:
    """One command's work on the transaction: requested, then (at most) one outcome."""

    kind: OperationKind
    command_id: str
    message_id: str
    fingerprint: str | None
    requested_at: datetime
    amount: int | None = None
    refund_id: str | None = None
    reason: str | None = None
    outcome_version: int | None = None  # the stream version of its outcome event
    error: Mapping[str, Any] | None = None  # API.md error fields when the outcome was a failure
    attempt_open: bool = True  # False after a recorded retryable failure: nobody is working on it
    last_failure: Mapping[str, Any] | None = None
    last_failure_at: datetime | None = None
    resolution: Mapping[str, Any] | None = None  # an operator's decision on an unresolved re-drive (its event's data)
    redrive_started_at: datetime | None = None  # a re-drive that may look up and create started, recorded nothing yet

    @property
    def finished(self) -> bool:
        return self.outcome_version is not None

    def redrive_under_way(self, now: datetime) -> bool:
        """A re-drive that may adopt or create the payment at the provider started and has recorded nothing since: it
        may be at the provider now. One started `REDRIVE_LASTS_AT_MOST` ago has died (its worker crashed): every
        provider call is bounded far below that (the driver's bound: attempts × (timeout + backoff cap) + 1 s)."""
        started = self.redrive_started_at
        if self.finished or started is None:
            return False
        return now - as_utc(started) < REDRIVE_LASTS_AT_MOST

    def unresolved_until(self) -> datetime | None:
        """Until when asking the provider again is useless: its last answer was unresolved (several of its objects
        may be the earlier attempt's, an operator decides), good for that answer's `retry_after`. None otherwise."""
        failure = self.last_failure
        if self.finished or not failure or not failure.get("unresolved") or self.last_failure_at is None:
            return None
        return as_utc(self.last_failure_at) + timedelta(seconds=float(failure.get("retry_after") or 0))


@dataclass
class Refund:
    id: str
    amount: int
    status: str  # pending | succeeded | failed
    created_at: str
    command_id: str
    reason: str | None = None
    provider_reference: str | None = None
    counted: bool = False  # in amount_refunded: the provider accepted it (and has not failed it since)
    failure_reason: str | None = None


REFUND_STATUS: Final = "refund_status"  # the kind of a noted report of one refund's new status


@dataclass(frozen=True)
class NotedRefundReport:
    """A provider's refund report that could not be told apart from a refund of ours under way when it came: settled
    once those refunds have their outcomes (domain.refund_reports)."""

    webhook_event_id: str
    # total (Stripe: the charge's refunded total) | refund (one refund, its amount) | void (all that remains) |
    # refund_status (Stripe: a refund's new status, about a refund not known here yet)
    kind: str
    # Stripe: the charge's latest refund (total), the refund (refund_status); Authorize.net: the refund's transId
    reference: str | None
    open_refunds: tuple[str, ...]  # command ids of our refunds under way when it was noted
    counted: int  # amount_refunded here when it was noted
    amount: int | None = None  # the total (total) or the refund's amount (refund)
    status: str | None = None  # the refund's status (refund_status): succeeded | failed | canceled
    failure_reason: str | None = None  # why it failed (refund_status)
    # the refunds the charge listed (total, Stripe): each's id, amount and status; none before they were kept
    refunds: tuple[Mapping[str, Any], ...] = ()


@dataclass
class Transaction:
    id: str
    workspace: str
    kind: str  # charge | authorize
    amount: int
    currency: str
    provider: str
    payment_method: Mapping[str, Any]
    customer_id: str | None
    description: str | None
    metadata: Mapping[str, str]
    created_at: str
    customer_reference: str | None = None  # the provider's id of the customer, when charging one
    status: Status = Status.PENDING
    amount_authorized: int = 0
    amount_captured: int = 0
    amount_refunded: int = 0
    provider_reference: str | None = None
    provider_details: dict[str, Any] = field(default_factory=dict)
    refunds: list[Refund] = field(default_factory=list)
    failure_code: str | None = None
    failure_message: str | None = None
    next_action: Mapping[str, Any] | None = None
    updated_at: str = ""
    version: int = -1
    operations: dict[str, Operation] = field(default_factory=dict)
    dispute: dict[str, Any] | None = None  # the latest dispute a provider reported: id, amount, reason, status
    noted_refund_reports: list[NotedRefundReport] = field(default_factory=list)  # until our refunds under way end

    @property
    def payment(self) -> Operation:
        return next(op for op in self.operations.values() if op.kind is OperationKind.PAYMENT)

    @property
    def refund_reserved(self) -> int:
        """Refunded plus refunds still pending: what is no longer refundable."""
        return sum(refund.amount for refund in self.refunds if refund.counted or refund.status == "pending")

    @property
    def refundable(self) -> int:
        return self.amount_captured - self.refund_reserved

    def known_credits(self, refund_amount: int) -> int:
        """Refunded, plus the refunds the provider reported while ours were under way (not counted yet) that
        cannot be a refund of `refund_amount` of ours: one of that very amount may be it (its answer lost)."""
        reports = self.noted_refund_reports
        noted = sum(r.amount or 0 for r in reports if r.kind == "refund" and r.amount != refund_amount)
        return self.amount_refunded + noted

    def open_operations(self) -> list[Operation]:
        return [op for op in self.operations.values() if not op.finished]

    def open_refunds(self) -> list[Operation]:
        return [op for op in self.open_operations() if op.kind is OperationKind.REFUND]

    def refund(self, refund_id: str) -> Refund:
        return next(refund for refund in self.refunds if refund.id == refund_id)

    def after(self, event_type: str, data: Mapping[str, Any], occurred: str) -> Transaction:
        """The state once an event about to be appended is (self is unchanged): for deciding what follows it in
        the same append."""
        recorded = RecordedEvent(
            id=uuid.UUID(int=0),  # never stored: the append gives the event its own
            stream=f"transaction-{self.id}",
            type=event_type,
            data=data,
            metadata={"occurred_at": occurred},
            version=self.version + 1,
            position=0,
            recorded_at=_NEVER_READ,  # occurred_at is given
        )
        following = copy.deepcopy(self)
        _apply(following, recorded)
        return following

    @classmethod
    def from_events(cls, recorded: Sequence[RecordedEvent]) -> Transaction | None:
        """The state after `recorded` (a stream's events in order, or a prefix of them); None for no events."""
        if not recorded:
            return None
        transaction = _start(recorded[0])
        for event in recorded[1:]:
            _apply(transaction, event)
        return transaction


_NEVER_READ: Final = datetime(1970, 1, 1, tzinfo=UTC)


def occurred_at(event: RecordedEvent) -> str:
    value = event.metadata.get("occurred_at")
    return str(value) if value else event.recorded_at.isoformat().replace("+00:00", "Z")


def _start(event: RecordedEvent) -> Transaction:
    if event.type != ev.TRANSACTION_REQUESTED:
        raise ValueError(f"a transaction stream starts with {ev.TRANSACTION_REQUESTED}, not {event.type}")
    data = event.data
    at = occurred_at(event)
    transaction = Transaction(
        id=data["transaction_id"],
        workspace=str(event.metadata.get("workspace", "")),
        kind=data["kind"],
        amount=data["amount"],
        currency=data["currency"],
        provider=data["provider"],
        payment_method=data["payment_method"],
        customer_id=data.get("customer_id"),
        customer_reference=data.get("customer_reference"),
        description=data.get("description"),
        metadata=data.get("metadata") or {},
        created_at=at,
        updated_at=at,
        version=event.version,
    )
    transaction.operations[data["command_id"]] = _operation(OperationKind.PAYMENT, event, amount=data["amount"])
    return transaction


def _operation(kind: OperationKind, event: RecordedEvent, **extra: Any) -> Operation:
    return Operation(
        kind=kind,
        command_id=event.data["command_id"],
        message_id=event.data.get("message_id", ""),
        fingerprint=event.data.get("fingerprint"),
        requested_at=event.recorded_at,
        **extra,
    )


def _finish(transaction: Transaction, event: RecordedEvent, error: Mapping[str, Any] | None = None) -> None:
    operation = transaction.operations[event.data["command_id"]]
    if operation.finished:  # a later move (e.g. a webhook after requires_action) keeps the first outcome
        return
    operation.outcome_version = event.version
    operation.error = error
    operation.attempt_open = False


def _payment_authorized(transaction: Transaction, event: RecordedEvent) -> None:
    _record_reference(transaction, event)
    transaction.status = Status.AUTHORIZED
    transaction.amount_authorized = event.data["amount"]
    transaction.next_action = None
    _finish(transaction, event)


def _payment_captured(transaction: Transaction, event: RecordedEvent) -> None:
    _record_reference(transaction, event)
    transaction.status = Status.CAPTURED
    transaction.amount_authorized = event.data["amount"]
    transaction.amount_captured = event.data["amount"]
    transaction.next_action = None
    _finish(transaction, event)


def _payment_requires_action(transaction: Transaction, event: RecordedEvent) -> None:
    _record_reference(transaction, event)
    transaction.status = Status.REQUIRES_ACTION
    transaction.next_action = event.data.get("next_action")
    _finish(transaction, event)


def _payment_held(transaction: Transaction, event: RecordedEvent) -> None:
    _record_reference(transaction, event)
    transaction.failure_message = event.data.get("message")
    _finish(transaction, event)


def _payment_failed(transaction: Transaction, event: RecordedEvent) -> None:
    _record_reference(transaction, event)
    transaction.status = Status.FAILED
    transaction.next_action = None
    transaction.failure_code = event.data["failure_code"]
    transaction.failure_message = event.data["error"]["message"]
    _finish(transaction, event, error=event.data["error"])


def _record_reference(transaction: Transaction, event: RecordedEvent) -> None:
    if event.data.get("provider_reference"):
        transaction.provider_reference = event.data["provider_reference"]
    transaction.provider_details.update(event.data.get("details") or {})


def _capture_requested(transaction: Transaction, event: RecordedEvent) -> None:
    operation = _operation(OperationKind.CAPTURE, event, amount=event.data["amount"])
    transaction.operations[operation.command_id] = operation


def _capture_succeeded(transaction: Transaction, event: RecordedEvent) -> None:
    transaction.status = Status.CAPTURED
    transaction.amount_captured = event.data["amount"]
    transaction.provider_details.update(event.data.get("details") or {})
    _finish(transaction, event)


def _void_requested(transaction: Transaction, event: RecordedEvent) -> None:
    operation = _operation(OperationKind.VOID, event)
    transaction.operations[operation.command_id] = operation


def _void_succeeded(transaction: Transaction, event: RecordedEvent) -> None:
    transaction.status = Status.VOIDED
    _finish(transaction, event)


def _refund_requested(transaction: Transaction, event: RecordedEvent) -> None:
    data = event.data
    operation = _operation(
        OperationKind.REFUND, event, amount=data["amount"], refund_id=data["refund_id"], reason=data.get("reason")
    )
    transaction.operations[operation.command_id] = operation
    refund = Refund(data["refund_id"], data["amount"], "pending", occurred_at(event), operation.command_id)
    refund.reason = data.get("reason")
    transaction.refunds.append(refund)


def _refund_succeeded(transaction: Transaction, event: RecordedEvent) -> None:
    refund = transaction.refund(event.data["refund_id"])
    refund.status = "pending" if event.data.get("provider_status") == "pending" else "succeeded"
    refund.provider_reference = event.data.get("provider_reference")
    _count_refund(transaction, refund)
    _finish(transaction, event)
    _drop_status_reports(transaction, refund.provider_reference)
    _settle_noted_reports(transaction)


def _drop_status_reports(transaction: Transaction, reference: str | None) -> None:
    """The status reports naming the refund this outcome records are settled by the events appended with it."""
    transaction.noted_refund_reports = [
        report
        for report in transaction.noted_refund_reports
        if not (report.kind == REFUND_STATUS and reference and report.reference == reference)
    ]


def _settle_noted_reports(transaction: Transaction) -> None:
    """Once no refund of ours is under way, the noted reports are settled: by the events appended with this outcome
    (domain.refund_reports decided them from the state before it)."""
    if not transaction.open_refunds():
        transaction.noted_refund_reports.clear()


def _count_refund(transaction: Transaction, refund: Refund) -> None:
    """A refund the provider accepted counts as refunded, as the provider counts it, pending or not. A refunded
    transaction stays refunded (API.md: final), also when a refund after a reversed one is partial."""
    refund.counted = True
    transaction.amount_refunded += refund.amount
    fully = transaction.amount_refunded >= transaction.amount_captured
    if transaction.status is not Status.REFUNDED:
        transaction.status = Status.REFUNDED if fully else Status.PARTIALLY_REFUNDED


def _refund_settled(transaction: Transaction, event: RecordedEvent) -> None:
    transaction.refund(event.data["refund_id"]).status = "succeeded"


def _refund_reversed(transaction: Transaction, event: RecordedEvent) -> None:
    """The refund shows failed and no longer counts in amount_refunded, as the provider no longer counts it: that
    amount is refundable again. The status stays (API.md: its moves go one way, and refunded is final)."""
    refund = transaction.refund(event.data["refund_id"])
    refund.status = "failed"
    refund.failure_reason = event.data.get("failure_reason")
    if refund.counted:
        refund.counted = False
        transaction.amount_refunded -= refund.amount


def _refund_failed(transaction: Transaction, event: RecordedEvent) -> None:
    transaction.refund(event.data["refund_id"]).status = "failed"
    _finish(transaction, event, error=event.data["error"])
    _settle_noted_reports(transaction)


def _follow_up_failed(transaction: Transaction, event: RecordedEvent) -> None:
    _finish(transaction, event, error=event.data["error"])


def _provider_call_failed(transaction: Transaction, event: RecordedEvent) -> None:
    operation = transaction.operations[event.data["command_id"]]
    operation.attempt_open = False
    operation.last_failure = event.data
    operation.last_failure_at = event.recorded_at
    operation.redrive_started_at = None  # the re-drive answered (or died and a later one did)


def _payment_redrive_started(transaction: Transaction, event: RecordedEvent) -> None:
    transaction.operations[event.data["command_id"]].redrive_started_at = event.recorded_at


def _payment_resolved(transaction: Transaction, event: RecordedEvent) -> None:
    """The decision only: the outcome it leads to is the next event, appended with it."""
    transaction.operations[event.data["command_id"]].resolution = event.data


def _provider_refunded(transaction: Transaction, event: RecordedEvent) -> None:
    data = event.data
    refund = Refund(data["refund_id"], data["amount"], "succeeded", occurred_at(event), command_id="")
    refund.provider_reference = data.get("provider_reference")
    transaction.refunds.append(refund)
    _count_refund(transaction, refund)


def _refund_report_noted(transaction: Transaction, event: RecordedEvent) -> None:
    data = event.data
    report = NotedRefundReport(
        webhook_event_id=str(data["webhook_event_id"]),
        kind=str(data["kind"]),
        reference=data.get("reference"),
        open_refunds=tuple(data["open_refunds"]),
        counted=data["counted"],
        amount=data.get("amount"),
        status=data.get("status"),
        failure_reason=data.get("failure_reason"),
        refunds=tuple(data.get("refunds") or ()),
    )
    transaction.noted_refund_reports.append(report)


def _dispute_reported(transaction: Transaction, event: RecordedEvent) -> None:
    data = event.data
    earlier = transaction.dispute if transaction.dispute is not None else {}
    transaction.dispute = {key: data.get(key) for key in ("dispute_id", "amount", "reason", "status")}
    same = earlier.get("dispute_id") == data.get("dispute_id")
    transaction.dispute["created_at"] = (
        (same and earlier.get("created_at")) or data.get("created_at") or occurred_at(event)
    )


_APPLY: Mapping[str, Callable[[Transaction, RecordedEvent], None]] = {
    ev.PAYMENT_AUTHORIZED: _payment_authorized,
    ev.PAYMENT_CAPTURED: _payment_captured,
    ev.PAYMENT_REQUIRES_ACTION: _payment_requires_action,
    ev.PAYMENT_HELD_FOR_REVIEW: _payment_held,
    ev.PAYMENT_FAILED: _payment_failed,
    ev.CAPTURE_REQUESTED: _capture_requested,
    ev.CAPTURE_SUCCEEDED: _capture_succeeded,
    ev.CAPTURE_FAILED: _follow_up_failed,
    ev.VOID_REQUESTED: _void_requested,
    ev.VOID_SUCCEEDED: _void_succeeded,
    ev.VOID_FAILED: _follow_up_failed,
    ev.REFUND_REQUESTED: _refund_requested,
    ev.REFUND_SUCCEEDED: _refund_succeeded,
    ev.REFUND_FAILED: _refund_failed,
    ev.REFUND_SETTLED: _refund_settled,
    ev.REFUND_REVERSED: _refund_reversed,
    ev.PROVIDER_CALL_FAILED: _provider_call_failed,
    ev.PAYMENT_RESOLVED_BY_OPERATOR: _payment_resolved,
    ev.PAYMENT_REDRIVE_STARTED: _payment_redrive_started,
    ev.PROVIDER_REFUNDED: _provider_refunded,
    ev.PROVIDER_REFUND_REPORT_NOTED: _refund_report_noted,
    ev.PAYMENT_DISPUTED: _dispute_reported,
    ev.PAYMENT_DISPUTE_CLOSED: _dispute_reported,
}


def _apply(transaction: Transaction, event: RecordedEvent) -> None:
    apply = _APPLY.get(event.type)
    if apply is not None:  # an event type this version does not know changes nothing
        apply(transaction, event)
    transaction.version = event.version
    transaction.updated_at = occurred_at(event)
