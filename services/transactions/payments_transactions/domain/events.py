"""Event type names of a `transaction-{id}` stream, and the event value the decision functions return.

A payment (charge/authorize) and every follow-up (capture, refund, void) is an *operation*: first its
`…Requested` event (appended before the provider is called), then exactly one outcome event. A retryable
provider failure (`ProviderCallFailed`) is recorded but is not an outcome: the operation stays open and is
driven again later with the same provider idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

TRANSACTION_REQUESTED: Final = "TransactionRequested"
PAYMENT_AUTHORIZED: Final = "PaymentAuthorized"
PAYMENT_CAPTURED: Final = "PaymentCaptured"
PAYMENT_REQUIRES_ACTION: Final = "PaymentRequiresAction"
PAYMENT_HELD_FOR_REVIEW: Final = "PaymentHeldForReview"
PAYMENT_FAILED: Final = "PaymentFailed"

CAPTURE_REQUESTED: Final = "CaptureRequested"
CAPTURE_SUCCEEDED: Final = "CaptureSucceeded"
CAPTURE_FAILED: Final = "CaptureFailed"

VOID_REQUESTED: Final = "VoidRequested"
VOID_SUCCEEDED: Final = "VoidSucceeded"
VOID_FAILED: Final = "VoidFailed"

REFUND_REQUESTED: Final = "RefundRequested"
REFUND_SUCCEEDED: Final = "RefundSucceeded"
REFUND_FAILED: Final = "RefundFailed"

PROVIDER_CALL_FAILED: Final = "ProviderCallFailed"
# An operator's decision on a payment whose re-drive was left unresolved (several provider objects may be its
# earlier attempt's): who decided what; the payment's outcome is appended with it (domain.resolution).
PAYMENT_RESOLVED_BY_OPERATOR: Final = "PaymentResolvedByOperator"

# A payment re-drive that may look for what its earlier attempts made, and create it when they made nothing, starts:
# appended at the version read before the provider is asked. An operator's decision on the payment and that re-drive
# are so ordered by the stream: a decision appended first keeps the re-drive from asking the provider; one read before
# the re-drive has recorded its answer is refused (domain.resolution), not recorded over the money the re-drive moved.
PAYMENT_REDRIVE_STARTED: Final = "PaymentRedriveStarted"

# Learned from provider webhooks (see payments_transactions.provider_events).
PROVIDER_REFUNDED: Final = "ProviderRefunded"  # a refund made at the provider itself (e.g. its dashboard)
# A provider's refund report that cannot be told apart from one of our refunds still under way: kept in the
# stream and settled by that refund's outcome (domain.refund_reports), appended with it.
PROVIDER_REFUND_REPORT_NOTED: Final = "ProviderRefundReportNoted"
# A noted report of a refund's status that names no refund known here once our refunds under way have their
# outcomes: recorded (in that append) for the audit trail, changes nothing.
PROVIDER_REFUND_REPORT_DROPPED: Final = "ProviderRefundReportDropped"
REFUND_SETTLED: Final = "RefundSettled"  # a refund the provider accepted as pending has reached the customer
# A refund the provider accepted, then failed (a closed card account): the money stayed with the merchant.
REFUND_REVERSED: Final = "RefundReversed"
PAYMENT_DISPUTED: Final = "PaymentDisputed"
PAYMENT_DISPUTE_CLOSED: Final = "PaymentDisputeClosed"
# A provider event that API.md's status rules do not allow: recorded for the audit trail, changes nothing.
PROVIDER_EVENT_DISCREPANCY: Final = "ProviderEventDiscrepancy"


def stream_name(transaction_id: str) -> str:
    return f"transaction-{transaction_id}"


@dataclass(frozen=True)
class DomainEvent:
    """An event decided by the domain, not yet stored (the service adds metadata and appends it)."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
