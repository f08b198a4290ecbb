"""What a provider's webhook event means for a transaction (pure): the event to append, or None.

Rules, in order:
- an event id already applied to the stream, or one older than the newest event already applied about the same
  provider object (provider timestamps), changes nothing: webhooks arrive late, twice and out of order;
- while the payment call is still open, its own outcome will say what the provider did: nothing to add;
- an Authorize.net notification of a transaction it did not approve (declined, error, held) moved no money;
- a move API.md's status rules allow is appended as the ordinary event (`PaymentCaptured` after
  `requires_action`, `VoidSucceeded` for a cancel made at the provider, `ProviderRefunded` for a dashboard
  refund, one per refund a refunded total is made of…); one they forbid (a success after `failed`, a dispute on
  an uncaptured payment) is recorded as `ProviderEventDiscrepancy` and changes nothing; what the stream already
  says is not repeated;
- a refund report that may be about a refund of ours still under way is noted (`ProviderRefundReportNoted`) and
  settled with that refund's outcome (domain.refund_reports).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from payments_shared.eventstore.port import RecordedEvent
from payments_shared.money import to_minor_units
from payments_shared.timestamps import unix_seconds_iso

from payments_transactions.domain import events as ev
from payments_transactions.domain import refund_reports
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.refund_reports import SETTLED
from payments_transactions.domain.state import REFUND_STATUS, OperationKind, Refund, Status, Transaction


@dataclass(frozen=True)
class ProviderEvent:
    """The `apply_provider_event` command's payload, as webhook-ingest sends it."""

    provider: str
    event_id: str
    type: str
    object_id: str | None
    created: str  # the provider's timestamp, ISO 8601 UTC with microseconds (compares as text)
    obj: Mapping[str, Any] = field(default_factory=dict)
    received_type: str | None = None  # set when the provider's current state replaced the payload's (re-fetched)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ProviderEvent:
        obj = payload.get("object")
        return cls(
            provider=str(payload["provider"]),
            event_id=str(payload["event_id"]),
            type=str(payload["event_type"]),
            object_id=str(payload["object_id"]) if payload.get("object_id") else None,
            created=str(payload["provider_created"]),
            obj=obj if isinstance(obj, Mapping) else {},
        )

    def references(self) -> list[str]:
        """Provider ids that may name the payment, most specific first (a dispute names its charge and intent)."""
        refund = self.obj.get("refund")  # an Authorize.net refund, re-fetched: the transaction it refunds
        original = refund.get("ref_trans_id") if isinstance(refund, Mapping) else None
        found = [id_of(self.obj.get("payment_intent")), self.object_id, id_of(self.obj.get("charge")), id_of(original)]
        return list(dict.fromkeys(ref for ref in found if ref))

    def stamp(self) -> dict[str, Any]:
        """Carried by every event a webhook causes: how repeats and stale deliveries are recognised."""
        return {
            "webhook_event_id": self.event_id,
            "provider_event_type": self.received_type or self.type,
            "provider_object_id": self.object_id,
            "provider_created": self.created,
        }


def id_of(value: object) -> str | None:
    """A provider id as a payload gives it: the id itself, or the object expanded in its place (Stripe's
    expandable fields: `"charge": "ch_…"` or `"charge": {"id": "ch_…", …}`); None for anything else."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class WebhookHistory:
    """What earlier webhook events did to a stream."""

    applied: frozenset[str]
    newest_by_object: Mapping[str, str]

    @classmethod
    def of(cls, recorded: Sequence[RecordedEvent]) -> WebhookHistory:
        applied: set[str] = set()
        newest: dict[str, str] = {}
        for event in recorded:
            event_id = event.data.get("webhook_event_id")
            if not event_id:
                continue
            applied.add(str(event_id))
            object_id, created = event.data.get("provider_object_id"), event.data.get("provider_created")
            if object_id and created and str(created) > newest.get(str(object_id), ""):
                newest[str(object_id)] = str(created)
        return cls(frozenset(applied), newest)

    def is_stale(self, event: ProviderEvent) -> bool:
        if event.event_id in self.applied:
            return True
        newest = self.newest_by_object.get(event.object_id or "")
        return newest is not None and event.created < newest


def decide(transaction: Transaction, event: ProviderEvent, history: WebhookHistory) -> list[DomainEvent]:
    """The events to append, in one append (none: nothing to apply); several only for a refunded total made of
    several refunds made elsewhere, one per refund."""
    if history.is_stale(event):
        return []
    rule = RULES.get((event.provider, event.type))
    if rule is None or not transaction.payment.finished:
        return []
    implied = _capture_implied(transaction, event)
    if implied is not None:
        transaction = transaction.after(implied.type, implied.data, event.created)
    decided = rule(transaction, event)
    listed = [] if decided is None else [decided] if isinstance(decided, DomainEvent) else decided
    if implied is not None:
        listed = [implied, *listed]
    return [DomainEvent(one.type, {**one.data, **event.stamp()}) for one in listed]


def _capture_implied(transaction: Transaction, event: ProviderEvent) -> DomainEvent | None:
    """Stripe does not promise the order of its events: a refund or a dispute of a payment still awaiting 3-D
    Secure can come before `payment_intent.succeeded`. A charge refunded or disputed was captured: its capture,
    recorded first in the same append (the success told later changes nothing)."""
    if event.provider != "stripe" or event.type not in CAPTURED_CHARGE_REPORTS or not _held_or_awaiting(transaction):
        return None
    captured = _captured(transaction, event, _stripe_amount(transaction, event, ("amount_captured",)))
    return captured if captured is not None and captured.type == ev.PAYMENT_CAPTURED else None


def discrepancy(transaction: Transaction, event: ProviderEvent, reason: str) -> DomainEvent:
    return DomainEvent(
        ev.PROVIDER_EVENT_DISCREPANCY,
        {"status": transaction.status.value, "reason": reason, "provider_object": dict(event.obj)},
    )


def _refused(transaction: Transaction, event: ProviderEvent) -> DomainEvent:
    return discrepancy(transaction, event, f"{event.type} is not a possible move from {transaction.status.value}")


def _too_much(transaction: Transaction, event: ProviderEvent, what: str, limit: int) -> DomainEvent:
    """An amount the transaction cannot hold (more than it asked for, or than was authorized) moves nothing."""
    return discrepancy(transaction, event, f"the provider reports {what}, more than the {limit} there can be")


def _held_or_awaiting(transaction: Transaction) -> bool:
    """Waiting for the provider: 3-D Secure (`requires_action`) or a fraud review (`pending` with an outcome)."""
    return transaction.status in (Status.REQUIRES_ACTION, Status.PENDING)


def _open(transaction: Transaction, *kinds: OperationKind) -> bool:
    return any(operation.kind in kinds for operation in transaction.open_operations())


def _captured(transaction: Transaction, event: ProviderEvent, amount: int) -> DomainEvent | None:
    """The provider took the money: after a wait, after an authorization (captured outside), or known already."""
    details = {"provider_status": event.obj.get("status")} if event.obj.get("status") else {}
    if _held_or_awaiting(transaction):
        if amount > transaction.amount:
            return _too_much(transaction, event, f"a capture of {amount}", transaction.amount)
        data = {"command_id": transaction.payment.command_id, "amount": amount, "details": details}
        return DomainEvent(ev.PAYMENT_CAPTURED, {**data, "provider_reference": transaction.provider_reference})
    if transaction.status is Status.AUTHORIZED:
        if _open(transaction, OperationKind.CAPTURE, OperationKind.VOID):
            return None  # our own capture/void is under way and records its outcome
        if amount > transaction.amount_authorized:
            return _too_much(transaction, event, f"a capture of {amount}", transaction.amount_authorized)
        released = max(0, transaction.amount_authorized - amount)
        data = {"command_id": transaction.payment.command_id, "amount": amount, "released": released}
        return DomainEvent(ev.CAPTURE_SUCCEEDED, {**data, "details": details})
    if transaction.status in SETTLED:
        return None
    return _refused(transaction, event)


def _authorized(transaction: Transaction, event: ProviderEvent, amount: int) -> DomainEvent | None:
    if _held_or_awaiting(transaction):
        if amount > transaction.amount:
            return _too_much(transaction, event, f"an authorization of {amount}", transaction.amount)
        data = {"command_id": transaction.payment.command_id, "amount": amount, "details": {}}
        return DomainEvent(ev.PAYMENT_AUTHORIZED, {**data, "provider_reference": transaction.provider_reference})
    if transaction.status in (Status.AUTHORIZED, *SETTLED, Status.VOIDED):
        return None
    return _refused(transaction, event)


def _failed(transaction: Transaction, event: ProviderEvent, error: Mapping[str, Any]) -> DomainEvent | None:
    if _held_or_awaiting(transaction):
        code = str(error.get("decline_code") or error.get("code") or "payment_failed")
        data = {"command_id": transaction.payment.command_id, "failure_code": code, "error": dict(error)}
        return DomainEvent(ev.PAYMENT_FAILED, {**data, "provider_reference": transaction.provider_reference})
    if transaction.status is Status.FAILED:
        return None
    return _refused(transaction, event)


def _voided(transaction: Transaction, event: ProviderEvent) -> DomainEvent | None:
    if transaction.status is Status.AUTHORIZED:
        if _open(transaction, OperationKind.CAPTURE, OperationKind.VOID):
            return None
        data = {"command_id": transaction.payment.command_id, "released": transaction.amount_authorized}
        return DomainEvent(ev.VOID_SUCCEEDED, data)
    if _held_or_awaiting(transaction):
        error = {"type": "card_error", "code": "payment_canceled", "message": "The provider canceled the payment."}
        return _failed(transaction, event, error)
    if transaction.status in (Status.VOIDED, Status.FAILED):
        return None
    return _refused(transaction, event)


def _refunded_in_total(
    transaction: Transaction, event: ProviderEvent, total: int
) -> DomainEvent | list[DomainEvent] | None:
    """The provider says `total` is refunded in all: what exceeds our refunds was made there, one refund per refund
    the charge lists (refund_reports.made_elsewhere). While one of ours is under way, a total beyond what is counted
    may or may not hold it: noted, for its outcome to settle."""
    if transaction.open_refunds() and total > transaction.amount_refunded:
        listed = _listed_refunds(event.obj)
        return refund_reports.noted(transaction, refund_reports.TOTAL, _latest_refund_id(event.obj), total, listed)
    extra = total - transaction.refund_reserved
    if extra <= 0:
        return None
    made = refund_reports.made_elsewhere(
        refund_reports.known_references(transaction), extra, _listed_refunds(event.obj)
    )
    return _refunded_elsewhere(transaction, event, extra, made)


def _refunded_elsewhere(
    transaction: Transaction, event: ProviderEvent, amount: int, made: Sequence[tuple[str | None, int]]
) -> list[DomainEvent]:
    """`amount` refunded at the provider, not through this system (dashboard refunds: `made`, each's reference and
    amount)."""
    if transaction.status not in SETTLED or amount > transaction.refundable:
        return [_too_much(transaction, event, f"a refund of {amount}", transaction.refundable)]
    return refund_reports.refunded_elsewhere(event.provider, event.event_id, made)


def _listed_refunds(charge: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The Refund objects a Stripe charge lists, newest first (`refunds`: in webhook payloads of API versions
    before 2022-11-15; later ones leave it out unless expanded)."""
    refunds = charge.get("refunds")
    listed = refunds.get("data") if isinstance(refunds, Mapping) else None
    return [refund for refund in listed if isinstance(refund, Mapping)] if isinstance(listed, list) else []


def _latest_refund_id(charge: Mapping[str, Any]) -> str | None:
    listed = _listed_refunds(charge)
    return str(listed[0]["id"]) if listed and listed[0].get("id") else None


def _dispute(transaction: Transaction, event: ProviderEvent, closed: bool) -> DomainEvent | None:
    if transaction.status not in SETTLED:
        return discrepancy(transaction, event, f"a dispute on a payment that is {transaction.status.value}")
    problem = _dispute_problem(transaction, event.obj)
    if problem is not None:
        return discrepancy(transaction, event, problem)
    dispute = transaction.dispute or {}
    status = event.obj.get("status")
    if dispute.get("dispute_id") == event.object_id and not _changes_dispute(event, dispute, closed):
        return None
    data = {
        "dispute_id": event.object_id,
        "amount": event.obj.get("amount"),
        "reason": event.obj.get("reason"),
        "status": status,
        "created_at": unix_seconds_iso(event.obj.get("created")) or event.created,
    }
    return DomainEvent(ev.PAYMENT_DISPUTE_CLOSED if closed else ev.PAYMENT_DISPUTED, data)


def _dispute_problem(transaction: Transaction, dispute: Mapping[str, Any]) -> str | None:
    """Why a reported dispute cannot be Stripe's about this payment (recorded as a discrepancy, moving nothing):
    an amount that is not a positive integer up to what was captured, a status Stripe does not have, a reason
    that is not text."""
    amount = dispute.get("amount")
    if type(amount) is not int or not 0 < amount <= transaction.amount_captured:
        return f"a dispute of {str(amount)[:20]!r}, not an amount up to the {transaction.amount_captured} captured"
    if dispute.get("status") not in DISPUTE_STATUSES:
        return f"a dispute with status {str(dispute.get('status'))[:40]!r}, not one of Stripe's"
    if not isinstance(dispute.get("reason"), str | None):
        return "a dispute whose reason is not text"
    return None


def _changes_dispute(event: ProviderEvent, known: Mapping[str, Any], closed: bool) -> bool:
    """Whether a report about the dispute recorded already changes it: its closing, or an update (evidence sent,
    under review) of one still open. Its creation told again or late, or an update told after the closing,
    changes nothing."""
    if known.get("status") == event.obj.get("status"):
        return False
    return closed or (event.type == STRIPE_DISPUTE_UPDATED and known.get("status") not in CLOSED_DISPUTE)


# ---- Stripe ---------------------------------------------------------------------------------------------------

STRIPE_DISPUTE_UPDATED = "charge.dispute.updated"
# Reports about a charge that only a captured one can have.
CAPTURED_CHARGE_REPORTS = frozenset(
    {"charge.refunded", "charge.dispute.created", STRIPE_DISPUTE_UPDATED, "charge.dispute.closed"}
)
CLOSED_DISPUTE = ("won", "lost", "warning_closed")
DISPUTE_STATUSES = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review", "prevented", *CLOSED_DISPUTE}
)


def _stripe_amount(
    transaction: Transaction, event: ProviderEvent, keys: Sequence[str] = ("amount_received", "amount")
) -> int:
    for key in keys:
        value = event.obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return transaction.amount


def _stripe_error(event: ProviderEvent) -> dict[str, Any]:
    last = event.obj.get("last_payment_error")
    last = last if isinstance(last, Mapping) else {}
    error: dict[str, Any] = {
        "type": "card_error",
        "code": str(last.get("code") or "card_declined"),
        "message": str(last.get("message") or "The payment failed."),
    }
    if last.get("decline_code"):
        error["decline_code"] = str(last["decline_code"])
    return error


def _stripe_refund_updated(transaction: Transaction, event: ProviderEvent) -> DomainEvent | None:
    """A Refund of ours that Stripe accepted as pending has succeeded, or one it accepted has failed (the money
    stayed with the merchant). Refunds made elsewhere are counted from `charge.refunded`. One not known here while
    a refund of ours is under way may be ours, its outcome not recorded yet: noted, for that outcome to settle."""
    refund = next((known for known in transaction.refunds if known.provider_reference == event.object_id), None)
    status = event.obj.get("status")
    reason = event.obj.get("failure_reason")
    reason = reason if isinstance(reason, str) and reason else None
    if refund is None and transaction.open_refunds() and status in ("succeeded", *refund_reports.FAILED):
        kind = REFUND_STATUS
        return refund_reports.noted(transaction, kind, event.object_id, None, status=status, failure_reason=reason)
    if refund is None or not refund.counted:
        return None
    return refund_reports.status_change(refund.id, refund.status, status if isinstance(status, str) else None, reason)


def _stripe_refunded(transaction: Transaction, event: ProviderEvent) -> DomainEvent | list[DomainEvent] | None:
    total = event.obj.get("amount_refunded")
    if not isinstance(total, int) or isinstance(total, bool):
        return discrepancy(transaction, event, "charge.refunded without amount_refunded")
    return _refunded_in_total(transaction, event, total)


# ---- Authorize.net ------------------------------------------------------------------------------------------


def _authnet_amount(transaction: Transaction, event: ProviderEvent) -> int:
    """`authAmount` is in the transaction's currency's major units (45.00 usd, 500 jpy): ours are minor units."""
    try:
        amount = to_minor_units(Decimal(str(event.obj.get("authAmount"))), transaction.currency)
    except (InvalidOperation, ValueError, OverflowError):  # not a number, NaN, Infinity
        return transaction.amount
    return amount if amount > 0 else transaction.amount


def _authnet_voided(transaction: Transaction, event: ProviderEvent) -> DomainEvent | list[DomainEvent] | None:
    """Authorize.net voids a captured transaction until it settles: the customer is not charged, a refund of it all
    made there (the merchant's interface), as this system's own whole refunds before settlement are voids. While a
    refund of ours is under way the void may be ours: noted, for its outcome to settle. A refund is a transaction of
    its own, voidable until it settles: a void that names a refund's transId reverses that refund."""
    voided_refund = _refund_named(transaction, event.object_id)
    if voided_refund is not None:
        return refund_reports.status_change(voided_refund.id, voided_refund.status, "canceled", None)
    if transaction.status is Status.CAPTURED and _open(transaction, OperationKind.REFUND):
        return refund_reports.noted(transaction, refund_reports.VOID, event.object_id, None)
    if transaction.status is Status.CAPTURED:
        whole = transaction.refundable
        return _refunded_elsewhere(transaction, event, whole, [(event.object_id, whole)])
    if transaction.status is Status.REFUNDED:
        return None  # our own whole refund, carried out as this void: its outcome recorded it
    return _voided(transaction, event)


def _refund_named(transaction: Transaction, reference: str | None) -> Refund | None:
    """The refund whose own provider id is `reference`; never one carried out as a void of the payment itself
    (it holds the payment's transId)."""
    if reference is None or reference == transaction.provider_reference:
        return None
    return next((refund for refund in transaction.refunds if refund.provider_reference == reference), None)


def _authnet_refunded(transaction: Transaction, event: ProviderEvent) -> DomainEvent | list[DomainEvent] | None:
    """A refund's notification names only the refund's transId; its details (re-fetched: `refund`) name the
    original. One we made is recorded already (by its transId); while a refund of ours is under way it may be
    that one: noted, for its outcome to settle (domain.refund_reports); any other is a refund made outside this
    system, applied as a Stripe dashboard refund is."""
    refund = event.obj.get("refund")
    if not isinstance(refund, Mapping) or refund.get("ref_trans_id") != transaction.provider_reference:
        return None  # not re-fetched, or not about this payment: recorded by webhook-ingest only
    if refund.get("status") in AUTHNET_UNDONE:
        return None  # voided before it settled (its void may have been told first), or never carried out
    if any(known.provider_reference == event.object_id for known in transaction.refunds):
        return None
    amount = refund.get("settle_amount") or refund.get("auth_amount")
    if not isinstance(amount, int) or amount <= 0:
        return discrepancy(transaction, event, "a refund without an amount")
    if _open(transaction, OperationKind.REFUND):
        return refund_reports.noted(transaction, refund_reports.REFUND, event.object_id, amount)
    return _refunded_elsewhere(transaction, event, amount, [(event.object_id, amount)])


def _authnet_captured(transaction: Transaction, event: ProviderEvent) -> DomainEvent | None:
    return _captured(transaction, event, _authnet_amount(transaction, event))


def _authnet_authorized(transaction: Transaction, event: ProviderEvent) -> DomainEvent | None:
    return _authorized(transaction, event, _authnet_amount(transaction, event))


def _authnet_approved(transaction: Transaction, event: ProviderEvent) -> DomainEvent | None:
    """fraud.approved: the held payment goes ahead as the kind it was (charge → captured, authorize → authorized)."""
    amount = _authnet_amount(transaction, event)
    if transaction.kind == "charge":
        return _captured(transaction, event, amount)
    return _authorized(transaction, event, amount)


def _authnet_declined(transaction: Transaction, event: ProviderEvent) -> DomainEvent | None:
    error = {"type": "card_error", "code": "card_declined", "message": "Declined after the fraud review."}
    return _failed(transaction, event, {**error, "decline_code": "fraud_declined"})


Rule = Callable[[Transaction, ProviderEvent], DomainEvent | list[DomainEvent] | None]


def _approved_only(rule: Rule) -> Rule:
    """Authorize.net notifies a transaction whatever became of it (`responseCode` 2 declined, 3 error, 4 held for
    review): only an approved one (1) moved money. A held one's fate comes with the review's fraud.* events."""

    def applied(transaction: Transaction, event: ProviderEvent) -> DomainEvent | list[DomainEvent] | None:
        code = event.obj.get("responseCode")
        return None if code is not None and str(code) != "1" else rule(transaction, event)

    return applied


RULES: Mapping[tuple[str, str], Rule] = {
    ("stripe", "payment_intent.succeeded"): lambda t, e: _captured(t, e, _stripe_amount(t, e)),
    ("stripe", "payment_intent.payment_failed"): lambda t, e: _failed(t, e, _stripe_error(e)),
    # an authorization (manual capture) that needed 3-D Secure: once authenticated it is `requires_capture`
    ("stripe", "payment_intent.amount_capturable_updated"): lambda t, e: _authorized(
        t, e, _stripe_amount(t, e, ("amount_capturable", "amount"))
    ),
    ("stripe", "payment_intent.canceled"): _voided,
    ("stripe", "charge.refunded"): _stripe_refunded,
    ("stripe", "charge.refund.updated"): _stripe_refund_updated,
    ("stripe", "refund.updated"): _stripe_refund_updated,
    ("stripe", "refund.failed"): _stripe_refund_updated,
    ("stripe", "charge.dispute.created"): lambda t, e: _dispute(t, e, closed=False),
    ("stripe", STRIPE_DISPUTE_UPDATED): lambda t, e: _dispute(t, e, closed=False),
    ("stripe", "charge.dispute.closed"): lambda t, e: _dispute(t, e, closed=True),
    ("authnet", "net.authorize.payment.authcapture.created"): _approved_only(_authnet_captured),
    ("authnet", "net.authorize.payment.authorization.created"): _approved_only(_authnet_authorized),
    ("authnet", "net.authorize.payment.capture.created"): _approved_only(_authnet_captured),
    ("authnet", "net.authorize.payment.priorAuthCapture.created"): _approved_only(_authnet_captured),
    ("authnet", "net.authorize.payment.refund.created"): _approved_only(_authnet_refunded),
    ("authnet", "net.authorize.payment.void.created"): _approved_only(_authnet_voided),
    ("authnet", "net.authorize.payment.fraud.held"): lambda t, e: None,  # our own outcome recorded the hold
    ("authnet", "net.authorize.payment.fraud.approved"): _authnet_approved,
    ("authnet", "net.authorize.payment.fraud.declined"): _authnet_declined,
}


# ---- the provider's current state (re-fetched) --------------------------------------------------------------

STRIPE_REFETCHED = (
    "payment_intent.succeeded",
    "payment_intent.amount_capturable_updated",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
)
AUTHNET_REFUND_CREATED = "net.authorize.payment.refund.created"
# Authorize.net's transactionStatus of a transaction that moved no money.
AUTHNET_UNDONE = ("voided", "declined", "generalError", "communicationError", "failedReview", "settlementError")


def refetch_reference(event: ProviderEvent) -> str | None:
    """The provider object to read before applying `event` (its payload may be stale), or None: a Stripe
    PaymentIntent, or the Authorize.net refund whose original transaction the notification does not name."""
    if event.received_type is not None:
        return None  # read already
    if event.provider == "stripe" and event.type in STRIPE_REFETCHED:
        reference = id_of(event.obj.get("payment_intent")) if event.type == "charge.refunded" else event.object_id
        return reference or None
    if event.provider == "authnet" and event.type == AUTHNET_REFUND_CREATED:
        return event.object_id
    return None


def names_only_itself(event: ProviderEvent) -> bool:
    """An Authorize.net refund notification: its transId is new to us when the refund was made elsewhere."""
    return event.provider == "authnet" and event.type == AUTHNET_REFUND_CREATED and event.received_type is None


def with_current_state(event: ProviderEvent, current: Mapping[str, Any]) -> ProviderEvent:
    """`event` told by the provider's current state (a `retrieve_payment` answer's details) instead of its payload:
    a PaymentIntent event becomes the event its intent's current status means (none for a status no rule
    follows); a refund total is the charge's current one, with the charge's current refunds when the read lists
    them (the payload's may be older than the total, or absent: API versions from 2022-11-15 leave them out)."""
    updated = replace(event, received_type=event.type)
    if event.provider == "authnet":
        return replace(updated, obj={**event.obj, "refund": dict(current)})
    if event.type == "charge.refunded":
        listed = {"refunds": current["refunds"]} if isinstance(current.get("refunds"), Mapping) else {}
        return replace(updated, obj={**event.obj, "amount_refunded": current.get("amount_refunded"), **listed})
    intent = current.get("object")
    if not isinstance(intent, Mapping):
        return event
    return replace(updated, type=_intent_event_type(intent), obj=intent)


def _intent_event_type(intent: Mapping[str, Any]) -> str:
    status = str(intent.get("status"))
    if status == "requires_payment_method" and intent.get("last_payment_error"):
        return "payment_intent.payment_failed"
    if status == "requires_capture":
        return "payment_intent.amount_capturable_updated"
    return f"payment_intent.{status}"  # succeeded, canceled; any other status has no rule: nothing is applied
