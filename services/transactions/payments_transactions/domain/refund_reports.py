"""Provider refund reports that arrive while a refund of ours is under way (pure).

Such a report cannot be told apart from our refund: Stripe's `charge.refunded` gives the charge's refunded total,
which holds our refund or not depending on whether Stripe has carried it out yet; an Authorize.net refund (or void)
notification names a transId we learn is ours only from our refund's outcome. So the report is noted
(`ProviderRefundReportNoted`) and decided when the last refund of ours under way gets its outcome, by
`settled_by`, whose events are appended in the same append as that outcome: neither is recorded without the other,
and the fold drops the noted reports with that outcome, so none is counted twice.

- A total (Stripe): what the charge had refunded when reported, less what was counted here then, less our refunds
  under way then that succeeded since; the largest such excess over the noted totals is a refund made elsewhere.
  A refund of ours is taken as included in a total reported before its outcome: if Stripe carried it out after the
  report instead, the `charge.refunded` Stripe sends for it brings the rest. Never more than Stripe has refunded.
  That excess is one refund per refund the charge listed with the total that is not known here (ours included),
  when they make it up, each with its id and amount (`made_elsewhere`); otherwise one named by the latest listed.
- A refund or a void (Authorize.net): each noted transId that is not the provider reference of one of our refunds
  is a refund made elsewhere (a void: of all that remains refundable).
What exceeds the refundable amount is a discrepancy, as for any refund made elsewhere.
- A refund's status (Stripe: `refund.updated`, `charge.refund.updated`, `refund.failed`) naming a refund not known
  here may be about ours, created at Stripe but without its outcome recorded yet (a crashed worker, re-driven
  later): settled by `statuses_settled_by` in the append of the outcome whose provider reference it names, as the
  report would have done had it come after (`RefundSettled`, `RefundReversed`). Once none of ours is under way, one
  naming another refund known by then is applied to it (e.g. a dashboard refund that a total noted before it
  records in that append, failed since), and one naming none is dropped, recorded as `ProviderRefundReportDropped`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final

from payments_shared.ids import derived_id

from payments_transactions.domain import events as ev
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.state import REFUND_STATUS, NotedRefundReport, Status, Transaction

_REFUND_NAMESPACE: Final = uuid.UUID("d9a3f3a4-55c1-4a8e-8f7e-2f5f0b6f9c21")
SETTLED: Final = (Status.CAPTURED, Status.PARTIALLY_REFUNDED, Status.REFUNDED)

TOTAL: Final = "total"
REFUND: Final = "refund"
VOID: Final = "void"
FAILED: Final = ("failed", "canceled")


def elsewhere_refund_id(provider: str, webhook_event_id: str) -> str:
    """The id of a refund made at the provider, derived from the webhook that told it (the same on every replay)."""
    return derived_id("re", str(uuid.uuid5(_REFUND_NAMESPACE, f"{provider}:{webhook_event_id}")))


def known_references(transaction: Transaction) -> set[str]:
    """The provider references of the refunds recorded here (ours and those made elsewhere)."""
    return {refund.provider_reference for refund in transaction.refunds if refund.provider_reference}


def made_elsewhere(
    known: Collection[str], amount: int, listed: Sequence[Mapping[str, Any]]
) -> list[tuple[str | None, int]]:
    """The refunds made at the provider (provider reference, amount; oldest first) that `amount`, refunded there
    beyond the refunds known here (by provider reference: `known`), is made of. `listed`: the provider's Refund
    objects of the charge, newest first (Stripe: the charge's `refunds`). Each listed refund not known that has not
    failed, when they add up to `amount` (then a failure of any of them later names the refund it reverses);
    otherwise one refund of `amount` named by the latest listed (a listing older or newer than the total, or one
    holding a refund of ours not known yet, cannot tell them apart)."""
    new: list[tuple[str | None, int]] = [
        (str(refund["id"]), int(refund["amount"]))
        for refund in listed
        if refund.get("id") and str(refund["id"]) not in known and refund.get("status") not in FAILED
        if isinstance(refund.get("amount"), int) and not isinstance(refund.get("amount"), bool)
    ]
    if new and sum(each for _, each in new) == amount:
        return new[::-1]
    latest = listed[0].get("id") if listed else None
    return [(str(latest) if latest else None, amount)]


def refunded_elsewhere(
    provider: str, webhook_event_id: str, made: Sequence[tuple[str | None, int]]
) -> list[DomainEvent]:
    """One `ProviderRefunded` per refund made at the provider (`made_elsewhere`: provider reference, amount), its id
    derived from the webhook event that told it (and, when that event told several, from the refund's reference)."""
    return [
        DomainEvent(
            ev.PROVIDER_REFUNDED,
            {
                "refund_id": elsewhere_refund_id(
                    provider, webhook_event_id if len(made) == 1 else f"{webhook_event_id}:{reference}"
                ),
                "amount": amount,
                "provider_reference": reference,
            },
        )
        for reference, amount in made
    ]


def noted(
    transaction: Transaction,
    kind: str,
    reference: str | None,
    amount: int | None,
    refunds: Sequence[Mapping[str, Any]] = (),
    **status: str | None,
) -> DomainEvent:
    """The report, kept with what it is judged against later (the caller adds the webhook's stamp); `refunds`: the
    refunds a total's charge lists (total), each's id, amount and status; `status`: a refund's status and failure
    reason (refund_status)."""
    data: dict[str, Any] = {
        "kind": kind,
        "reference": reference,
        "amount": amount,
        "open_refunds": [operation.command_id for operation in transaction.open_refunds()],
        "counted": transaction.amount_refunded,
        **status,
    }
    if refunds:
        data["refunds"] = [{key: refund.get(key) for key in ("id", "amount", "status")} for refund in refunds]
    return DomainEvent(ev.PROVIDER_REFUND_REPORT_NOTED, data)


def statuses_settled_by(
    transaction: Transaction, command_id: str, outcome: DomainEvent, settled: Sequence[DomainEvent]
) -> list[DomainEvent]:
    """What the status reports noted while our refunds were under way do once `outcome` (of our refund `command_id`)
    is recorded with `settled` (what `settled_by` decided), in the order noted, as they would have done had they
    come after it. A report naming the refund `outcome` records (as succeeded) is applied to it. Once no refund of
    ours is under way the fold drops them all: then one naming a refund known by then (by its provider reference:
    one recorded before, or one made elsewhere that `settled` records from a report noted before it) is applied to
    that refund, and one naming none is recorded as dropped."""
    last = _ends_the_last(transaction, command_id, outcome)
    own = outcome.data.get("provider_reference") if outcome.type == ev.REFUND_SUCCEEDED else None
    known = {  # provider reference -> (refund id, status); a refund no longer counted is failed
        refund.provider_reference: (refund.id, refund.status if refund.counted else "failed")
        for refund in transaction.refunds
        if refund.provider_reference
    }
    if own:
        known[own] = (str(outcome.data["refund_id"]), outcome.data.get("provider_status") or "succeeded")
    made_by: dict[str, list[DomainEvent]] = {}  # noted report -> the refunds made elsewhere it records
    for recorded in settled:
        if recorded.type == ev.PROVIDER_REFUNDED and recorded.data.get("provider_reference"):
            made_by.setdefault(recorded.data["noted_report"], []).append(recorded)
    events: list[DomainEvent] = []
    for report in transaction.noted_refund_reports:
        for made in made_by.get(report.webhook_event_id, []):
            known.setdefault(made.data["provider_reference"], (made.data["refund_id"], "succeeded"))
        if report.kind != REFUND_STATUS or not (last or (own and report.reference == own)):
            continue
        found = known.get(report.reference) if report.reference else None
        if found is None:
            events.append(_dropped(report))
            continue
        refund_id, status = found
        event = status_change(refund_id, status, report.status, report.failure_reason)
        if event is not None:
            events.append(DomainEvent(event.type, {**event.data, "noted_report": report.webhook_event_id}))
            known[str(report.reference)] = (refund_id, "succeeded" if event.type == ev.REFUND_SETTLED else "failed")
    return events


def _dropped(report: NotedRefundReport) -> DomainEvent:
    reason = f"the provider reports refund {report.reference} {report.status}, which names no refund known here"
    data = {"noted_report": report.webhook_event_id, "reference": report.reference, "status": report.status}
    return DomainEvent(ev.PROVIDER_REFUND_REPORT_DROPPED, {**data, "reason": reason})


def _ends_the_last(transaction: Transaction, command_id: str, outcome: DomainEvent) -> bool:
    """Whether `outcome` ends the last refund of ours under way (a retryable failure ends none)."""
    if outcome.type not in (ev.REFUND_SUCCEEDED, ev.REFUND_FAILED):
        return False
    return all(operation.command_id == command_id for operation in transaction.open_refunds())


def status_change(refund_id: str, status: str, reported: str | None, reason: str | None) -> DomainEvent | None:
    """What a provider's report that a refund of ours (now `status`) is `reported` records: a pending one that
    succeeded is settled, one that failed or was canceled is reversed (the money stayed with the merchant)."""
    if reported == "succeeded" and status == "pending":
        return DomainEvent(ev.REFUND_SETTLED, {"refund_id": refund_id})
    if reported in FAILED and status != "failed":
        return DomainEvent(ev.REFUND_REVERSED, {"refund_id": refund_id, "failure_reason": reason or reported})
    return None


def settled_by(transaction: Transaction, command_id: str, outcome: DomainEvent) -> list[DomainEvent]:
    """The events the noted reports add once `outcome` (of our refund `command_id`, open in `transaction`) is
    recorded; none while another refund of ours is still under way."""
    reports = transaction.noted_refund_reports
    if not reports or not _ends_the_last(transaction, command_id, outcome):
        return []
    succeeded = outcome.type == ev.REFUND_SUCCEEDED
    accounted = _our_references(transaction, outcome if succeeded else None)
    released = 0 if succeeded else transaction.operations[command_id].amount or 0
    known = known_references(transaction) | {ref for ref in accounted if ref}
    elsewhere = _Elsewhere(transaction, transaction.refundable + released, known)
    totals = [report for report in reports if report.kind == TOTAL]
    if totals:
        included = _included(transaction, command_id, succeeded)
        largest = max(totals, key=lambda report: _beyond_ours(transaction, report, included))
        elsewhere.add(largest, _beyond_ours(transaction, largest, included))
    for report in reports:
        if report.kind in (REFUND, VOID) and report.reference not in accounted:
            accounted.add(report.reference)  # the same refund told twice (two notifications) counts once
            elsewhere.add(report, report.amount if report.kind == REFUND else None)
    return elsewhere.events


def _our_references(transaction: Transaction, succeeded: DomainEvent | None) -> set[str | None]:
    found = {refund.provider_reference for refund in transaction.refunds if refund.command_id}
    if succeeded is not None:
        found.add(succeeded.data.get("provider_reference"))
    return {reference for reference in found if reference}


def _included(transaction: Transaction, command_id: str, succeeded: bool) -> Callable[[str], bool]:
    """Whether our refund `cid`, under way when a report was noted, is taken as included in its total."""

    def included(cid: str) -> bool:
        if cid == command_id:
            return succeeded
        operation = transaction.operations[cid]
        return operation.finished and operation.error is None

    return included


def _beyond_ours(transaction: Transaction, report: NotedRefundReport, included: Callable[[str], bool]) -> int:
    ours = sum(transaction.operations[cid].amount or 0 for cid in report.open_refunds if included(cid))
    return (report.amount or 0) - report.counted - ours


class _Elsewhere:
    """Refunds made elsewhere, each judged against what the ones before it left refundable."""

    def __init__(self, transaction: Transaction, refundable: int, known: Collection[str]) -> None:
        self._transaction = transaction
        self._refundable = refundable
        self._known = known
        self.events: list[DomainEvent] = []

    def add(self, report: NotedRefundReport, amount: int | None) -> None:
        """`amount` None: all that remains refundable (a void). A total is one refund per refund its charge listed
        that is not known here, when they make it up (made_elsewhere)."""
        amount = self._refundable if amount is None else amount
        if amount <= 0:
            return
        if self._transaction.status not in SETTLED or amount > self._refundable:
            reason = f"the provider reports a refund of {amount}, more than the {self._refundable} there can be"
            noted_report = report.webhook_event_id
            told = {"status": self._transaction.status.value, "reason": reason, "noted_report": noted_report}
            self.events.append(DomainEvent(ev.PROVIDER_EVENT_DISCREPANCY, told))
            return
        self._refundable -= amount
        made = made_elsewhere(self._known, amount, report.refunds) if report.refunds else [(report.reference, amount)]
        for refunded in refunded_elsewhere(self._transaction.provider, report.webhook_event_id, made):
            self.events.append(DomainEvent(refunded.type, {**refunded.data, "noted_report": report.webhook_event_id}))
