"""Provider webhook events applied to a transaction (pure): API.md's status rules respected (a forbidden move
is a recorded discrepancy), repeats and older events change nothing, dashboard refunds and disputes recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from payments_shared.eventstore.port import RecordedEvent
from payments_shared.providers.port import Outcome, ProviderResult
from payments_shared.providers.stripe_results import refund_result
from payments_transactions.domain import decisions
from payments_transactions.domain import events as ev
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.provider_events import ProviderEvent, WebhookHistory, decide
from payments_transactions.domain.state import Status, Transaction
from payments_transactions.provider_index import provider_ids
from payments_transactions.views import transaction_json

START = datetime(2026, 1, 1, tzinfo=UTC)


class Stream:
    def __init__(
        self, kind: str = "charge", amount: int = 1000, provider: str = "stripe", currency: str = "usd"
    ) -> None:
        self.events: list[DomainEvent] = [
            decisions.request_payment(
                transaction_id="txn_1",
                kind=kind,
                amount=amount,
                currency=currency,
                provider=provider,
                payment_method={"type": "token", "token": "pm_card_visa"},
                customer_id=None,
                description=None,
                metadata={},
                command_id="cmd_pay",
                message_id="msg_1",
                fingerprint="fp",
            )
        ]

    def recorded(self) -> list[RecordedEvent]:
        return [
            RecordedEvent(
                id=uuid.UUID(int=version + 1),
                stream="transaction-txn_1",
                type=event.type,
                data=dict(event.data),
                metadata={"workspace": "ws_a", "occurred_at": f"2026-01-01T00:00:{version:02d}.000000Z"},
                version=version,
                position=version + 1,
                recorded_at=START + timedelta(seconds=version),
            )
            for version, event in enumerate(self.events)
        ]

    @property
    def state(self) -> Transaction:
        transaction = Transaction.from_events(self.recorded())
        assert transaction is not None
        return transaction

    def outcome(self, outcome: Outcome, **result: Any) -> Stream:
        self.events.append(decisions.payment_outcome(self.state, ProviderResult(outcome, reference="pi_1", **result)))
        return self

    def apply(self, event: ProviderEvent) -> DomainEvent | None:
        """The last event `event` appends (None: none)."""
        decided = decide(self.state, event, WebhookHistory.of(self.recorded()))
        self.events.extend(decided)
        return decided[-1] if decided else None


def stripe(event_type: str, second: int = 1, object_id: str = "pi_1", **obj: Any) -> ProviderEvent:
    return ProviderEvent(
        provider="stripe",
        event_id=f"evt_{uuid.uuid4().hex}",
        type=event_type,
        object_id=object_id,
        created=f"2026-01-01T00:01:{second:02d}.000000Z",
        obj={"id": object_id, **obj},
    )


def authnet(event_type: str, second: int = 1, amount: float | str = 10.0) -> ProviderEvent:
    return ProviderEvent(
        provider="authnet",
        event_id=str(uuid.uuid4()),
        type=f"net.authorize.payment.{event_type}",
        object_id="pi_1",
        created=f"2026-01-01T00:01:{second:02d}.000000Z",
        obj={"id": "pi_1", "authAmount": amount, "entityName": "transaction"},
    )


def types(stream: Stream) -> list[str]:
    return [event.type for event in stream.events]


def test_a_payment_that_needed_action_is_captured_by_its_success_event_once() -> None:
    stream = Stream().outcome(Outcome.REQUIRES_ACTION, next_action={"type": "redirect"})
    succeeded = stripe("payment_intent.succeeded", amount_received=1000, status="succeeded")
    decided = stream.apply(succeeded)
    assert decided is not None and decided.type == ev.PAYMENT_CAPTURED
    assert decided.data["webhook_event_id"] == succeeded.event_id
    assert (stream.state.status, stream.state.amount_captured) == (Status.CAPTURED, 1000)
    assert stream.apply(succeeded) is None  # a repeat


@pytest.mark.parametrize("report", ["charge.refunded", "charge.dispute.created"])
def test_a_refund_or_dispute_told_before_the_payments_success_first_records_the_capture_it_implies(
    report: str,
) -> None:
    """Stripe does not promise order: a dashboard refund (or a dispute) of a 3-D Secure payment can arrive before
    `payment_intent.succeeded`. A charge refunded or disputed was captured: that is recorded first, then the report;
    the success told later changes nothing. (It was a discrepancy, and the refund or dispute was lost.)"""
    stream = Stream().outcome(Outcome.REQUIRES_ACTION)
    if report == "charge.refunded":
        told = stripe(report, second=3, object_id="ch_1", amount_captured=1000, amount_refunded=1000)
    else:
        told = stripe(report, second=3, object_id="dp_1", amount=1000, status="needs_response", charge="ch_1")

    stream.apply(told)

    assert types(stream)[2] == ev.PAYMENT_CAPTURED and ev.PROVIDER_EVENT_DISCREPANCY not in types(stream)
    assert stream.state.amount_captured == 1000
    if report == "charge.refunded":
        assert (stream.state.status, stream.state.amount_refunded) == (Status.REFUNDED, 1000)
    else:
        assert stream.state.dispute is not None and stream.state.dispute["status"] == "needs_response"
    late = stripe("payment_intent.succeeded", second=2, amount_received=1000, status="succeeded")
    assert stream.apply(late) is None
    assert types(stream).count(ev.PAYMENT_CAPTURED) == 1


def test_a_failure_after_action_fails_the_payment_with_the_providers_codes() -> None:
    stream = Stream().outcome(Outcome.REQUIRES_ACTION)
    error = {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    }
    stream.apply(stripe("payment_intent.payment_failed", last_payment_error=error))
    assert stream.state.status is Status.FAILED
    assert stream.state.failure_code == "insufficient_funds"


def test_an_older_failure_after_a_newer_success_changes_nothing() -> None:
    stream = Stream().outcome(Outcome.REQUIRES_ACTION)
    stream.apply(stripe("payment_intent.succeeded", second=20))
    assert stream.apply(stripe("payment_intent.payment_failed", second=10)) is None
    assert stream.state.status is Status.CAPTURED


def test_a_forbidden_move_is_recorded_as_a_discrepancy_not_applied() -> None:
    stream = Stream().outcome(Outcome.DECLINED, decline_code="generic_decline")
    decided = stream.apply(stripe("payment_intent.succeeded"))
    assert decided is not None and decided.type == ev.PROVIDER_EVENT_DISCREPANCY
    assert stream.state.status is Status.FAILED


def test_nothing_is_applied_while_the_payment_call_is_still_open() -> None:
    stream = Stream()
    assert stream.apply(stripe("payment_intent.succeeded")) is None
    assert types(stream) == [ev.TRANSACTION_REQUESTED]


def test_a_cancel_at_the_provider_voids_an_authorization() -> None:
    stream = Stream(kind="authorize").outcome(Outcome.APPROVED, amount=1000)
    before = stream.state.status
    stream.apply(stripe("payment_intent.canceled", status="canceled"))
    assert (before, stream.state.status) == (Status.AUTHORIZED, Status.VOIDED)


def test_a_capture_at_the_provider_captures_an_authorization() -> None:
    stream = Stream(kind="authorize").outcome(Outcome.APPROVED, amount=1000)
    stream.apply(stripe("payment_intent.succeeded", amount_received=600))
    assert (stream.state.status, stream.state.amount_captured) == (Status.CAPTURED, 600)


def test_dashboard_refunds_are_added_up_to_the_captured_amount() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    refunds = {"data": [{"id": "re_1", "amount": 400}]}
    stream.apply(stripe("charge.refunded", second=5, object_id="ch_1", amount_refunded=400, refunds=refunds))
    assert (stream.state.status, stream.state.amount_refunded) == (Status.PARTIALLY_REFUNDED, 400)
    assert stream.state.refunds[0].provider_reference == "re_1"
    stream.apply(stripe("charge.refunded", second=9, object_id="ch_1", amount_refunded=1000))
    assert (stream.state.status, stream.state.amount_refunded) == (Status.REFUNDED, 1000)
    # The first delivery again, late: already counted.
    assert stream.apply(stripe("charge.refunded", second=5, object_id="ch_1", amount_refunded=400)) is None
    assert stream.state.amount_refunded == 1000


def test_a_refund_above_what_was_captured_is_a_discrepancy() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    decided = stream.apply(stripe("charge.refunded", object_id="ch_1", amount_refunded=5000))
    assert decided is not None and decided.type == ev.PROVIDER_EVENT_DISCREPANCY
    assert stream.state.amount_refunded == 0


def test_our_own_refund_is_not_counted_twice() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    stream.events.append(decisions.request_refund(stream.state, "cmd_ref", "re_ours", 300, None, "msg_2", "fp2"))
    # Under way: the total may hold it or not; its outcome settles it (domain.refund_reports).
    noted = stream.apply(stripe("charge.refunded", object_id="ch_1", amount_refunded=300))
    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED
    answer = refund_result({"id": "re_at_stripe", "status": "succeeded", "amount": 300})
    stream.events.extend(decisions.refund_outcome_events(stream.state, "cmd_ref", answer))
    assert types(stream)[-1] == ev.REFUND_SUCCEEDED
    assert stream.state.amount_refunded == 300
    assert stream.apply(stripe("charge.refunded", second=3, object_id="ch_1", amount_refunded=300)) is None


def test_a_dispute_is_recorded_then_closed_and_a_late_creation_is_ignored() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    created = stripe("charge.dispute.created", second=3, object_id="dp_1", amount=1000, status="needs_response")
    stream.apply(created)
    assert stream.state.dispute == {
        "dispute_id": "dp_1",
        "amount": 1000,
        "reason": None,
        "status": "needs_response",
        "created_at": "2026-01-01T00:01:03.000000Z",  # the event's time: the payload has no `created`
    }
    stream.apply(stripe("charge.dispute.closed", second=8, object_id="dp_1", amount=1000, status="lost"))
    assert stream.state.dispute is not None and stream.state.dispute["status"] == "lost"
    late = stripe("charge.dispute.created", second=2, object_id="dp_1", status="warning_needs_response")
    assert stream.apply(late) is None
    assert stream.state.status is Status.CAPTURED


@pytest.mark.parametrize(
    "dispute",
    [
        {"amount": 99_999_999, "status": "needs_response"},  # more than was captured
        {"amount": 0, "status": "needs_response"},
        {"amount": "lots", "status": "needs_response"},
        {"amount": True, "status": "needs_response"},
        {"status": "needs_response"},
        {"amount": 500, "status": "bogus_status"},
        {"amount": 500, "status": "lost", "reason": {"x": 1}},
    ],
)
def test_a_dispute_stripe_could_not_have_sent_is_a_discrepancy_and_moves_nothing(dispute: dict[str, Any]) -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    decided = stream.apply(stripe("charge.dispute.created", object_id="dp_1", **dispute))
    assert decided is not None and decided.type == ev.PROVIDER_EVENT_DISCREPANCY
    assert stream.state.dispute is None


def test_a_dispute_on_an_authorization_is_a_discrepancy() -> None:
    stream = Stream(kind="authorize").outcome(Outcome.APPROVED, amount=1000)
    decided = stream.apply(stripe("charge.dispute.created", object_id="dp_1"))
    assert decided is not None and decided.type == ev.PROVIDER_EVENT_DISCREPANCY


def test_authnet_fraud_review_approved_captures_a_held_charge() -> None:
    stream = Stream(provider="authnet").outcome(Outcome.PENDING_REVIEW, amount=1000, message="held")
    assert stream.state.status is Status.PENDING
    assert stream.apply(authnet("fraud.held")) is None
    stream.apply(authnet("fraud.approved", second=5, amount=10.0))
    assert (stream.state.status, stream.state.amount_captured) == (Status.CAPTURED, 1000)


def test_authnet_fraud_review_declined_fails_a_held_authorization() -> None:
    stream = Stream(kind="authorize", provider="authnet").outcome(Outcome.PENDING_REVIEW, message="held")
    stream.apply(authnet("fraud.declined"))
    assert (stream.state.status, stream.state.failure_code) == (Status.FAILED, "fraud_declined")


def test_authnet_void_and_capture_at_the_provider() -> None:
    voided = Stream(kind="authorize", provider="authnet").outcome(Outcome.APPROVED, amount=4500)
    voided.apply(authnet("void.created"))
    assert voided.state.status is Status.VOIDED
    captured = Stream(kind="authorize", amount=4500, provider="authnet").outcome(Outcome.APPROVED, amount=4500)
    captured.apply(authnet("capture.created", amount=45.0))
    assert (captured.state.status, captured.state.amount_captured) == (Status.CAPTURED, 4500)


def test_an_unknown_event_type_changes_nothing() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    assert stream.apply(stripe("payment_intent.processing")) is None


def test_the_index_reads_every_provider_id_an_event_records() -> None:
    data = {"provider_reference": "pi_1", "details": {"charge": "ch_1", "payment_intent": "pi_1", "card_last4": "4242"}}
    assert provider_ids(data) == ["pi_1", "pi_1", "ch_1"]
    assert provider_ids({"provider_reference": None}) == []


def test_a_disputes_own_creation_time_is_used_when_a_datetime_can_hold_it() -> None:
    def dispute_created_at(created: object) -> str:
        stream = Stream().outcome(Outcome.APPROVED, amount=1000)
        dispute = {"amount": 1000, "status": "needs_response", "created": created}
        stream.apply(stripe("charge.dispute.created", second=3, object_id="dp_1", **dispute))
        assert stream.state.dispute is not None
        return str(stream.state.dispute["created_at"])

    assert dispute_created_at(1_767_225_600) == "2026-01-01T00:00:00.000000Z"
    for unusable in (10**20, -(10**20), "yesterday", True):  # 10**20 was an OverflowError in the worker
        assert dispute_created_at(unusable) == "2026-01-01T00:01:03.000000Z"


def test_an_amount_the_transaction_cannot_hold_is_a_discrepancy_not_a_move() -> None:
    awaiting = Stream().outcome(Outcome.REQUIRES_ACTION)
    decided = awaiting.apply(stripe("payment_intent.succeeded", amount_received=10**30, status="succeeded"))
    assert decided is not None and decided.type == ev.PROVIDER_EVENT_DISCREPANCY
    assert (awaiting.state.status, awaiting.state.amount_captured) == (Status.REQUIRES_ACTION, 0)

    authorized = Stream(kind="authorize").outcome(Outcome.APPROVED, amount=1000)
    decided = authorized.apply(stripe("payment_intent.succeeded", amount_received=1001, status="succeeded"))
    assert decided is not None and decided.type == ev.PROVIDER_EVENT_DISCREPANCY
    assert (authorized.state.status, authorized.state.amount_captured) == (Status.AUTHORIZED, 0)
    assert authorized.apply(stripe("payment_intent.succeeded", amount_received=1000, status="succeeded")) is not None
    assert (authorized.state.status, authorized.state.amount_captured) == (Status.CAPTURED, 1000)

    held = Stream(provider="authnet").outcome(Outcome.PENDING_REVIEW, amount=1000, message="held")
    decided = held.apply(authnet("authorization.created", amount=10.01))
    assert decided is not None and decided.type == ev.PROVIDER_EVENT_DISCREPANCY
    assert held.state.status is Status.PENDING


def test_an_authnet_amount_counts_in_its_transactions_currency() -> None:
    """authAmount is in major units: 500 jpy is 500, 1.23 kwd is 1230, 10.99 usd is 1099."""
    for currency, reported, amount in (("jpy", 500.0, 500), ("kwd", "1.230", 1230), ("usd", 10.99, 1099)):
        held = Stream(amount=amount, provider="authnet", currency=currency)
        held.outcome(Outcome.PENDING_REVIEW, amount=amount, message="held")
        decided = held.apply(authnet("authcapture.created", amount=reported))
        assert decided is not None and decided.type == ev.PAYMENT_CAPTURED, currency
        assert (held.state.status, held.state.amount_captured) == (Status.CAPTURED, amount)


def test_an_authnet_amount_that_is_not_a_number_counts_as_the_transactions_own() -> None:
    # In the worker, Infinity was an OverflowError, 1E+10000000 a decimal.Overflow, and 1E+999990 held it ~20 s
    for unusable in (float("inf"), float("nan"), "1E+10000000", "1E+999990"):
        held = Stream(provider="authnet").outcome(Outcome.PENDING_REVIEW, amount=1000, message="held")
        held.apply(authnet("authcapture.created", amount=unusable))
        assert (held.state.status, held.state.amount_captured) == (Status.CAPTURED, 1000)


@pytest.mark.parametrize(
    ("dispute_status", "refusable"),
    [
        ("needs_response", True),
        ("under_review", True),
        ("lost", True),
        ("warning_needs_response", False),  # an inquiry: a refund is still possible
        ("won", False),
    ],
)
def test_a_disputed_charge_cannot_be_refunded_as_stripe_refuses(dispute_status: str, refusable: bool) -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    stream.apply(stripe("charge.dispute.created", second=3, object_id="dp_1", amount=1000, status=dispute_status))
    refund = partial(decisions.request_refund, stream.state, "cmd_ref", "re_1", 300, None, "msg_2", "fp2")
    if refusable:
        with pytest.raises(decisions.DomainError) as refused:
            refund()
        assert refused.value.code == "charge_disputed"
    else:
        assert refund().type == ev.REFUND_REQUESTED


def refunded(stream: Stream, amount: int, refund_status: str) -> str:
    """A refund of ours that Stripe answered with `refund_status`: its provider reference."""
    requested = decisions.request_refund(stream.state, "cmd_ref", "re_ours", amount, None, "msg_2", "fp2")
    stream.events.append(requested)
    answer = refund_result({"id": "re_at_stripe", "status": refund_status, "amount": amount})
    stream.events.append(decisions.refund_outcome(stream.state, "cmd_ref", answer))
    return "re_at_stripe"


def refund_event(event_type: str, second: int, status: str, **obj: Any) -> ProviderEvent:
    return stripe(event_type, second=second, object_id="re_at_stripe", payment_intent="pi_1", status=status, **obj)


def test_a_refund_stripe_accepts_as_pending_shows_pending_until_stripe_says_it_succeeded() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    refunded(stream, 1000, "pending")
    assert [refund.status for refund in stream.state.refunds] == ["pending"]
    assert (stream.state.status, stream.state.amount_refunded, stream.state.refundable) == (Status.REFUNDED, 1000, 0)

    settled = stream.apply(refund_event("charge.refund.updated", 5, "succeeded"))

    assert settled is not None and settled.type == ev.REFUND_SETTLED
    assert [refund.status for refund in stream.state.refunds] == ["succeeded"]
    assert (stream.state.amount_refunded, stream.state.refundable) == (1000, 0)
    assert stream.apply(refund_event("refund.updated", 6, "succeeded")) is None


@pytest.mark.parametrize("answered", ["pending", "succeeded"])
def test_a_refund_that_fails_at_stripe_after_it_was_accepted_shows_failed(answered: str) -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    refunded(stream, 400, answered)

    reversed_ = stream.apply(refund_event("refund.failed", 5, "failed", failure_reason="expired_or_canceled_card"))

    assert reversed_ is not None and reversed_.type == ev.REFUND_REVERSED
    shown = transaction_json(stream.state)["refunds"]
    assert [(r["status"], r.get("failure_reason")) for r in shown] == [("failed", "expired_or_canceled_card")]
    # Stripe no longer counts it: neither does amount_refunded, and it is refundable again. API.md's status moves
    # go one way, so the status stays.
    assert (stream.state.status, stream.state.amount_refunded, stream.state.refundable) == (
        Status.PARTIALLY_REFUNDED,
        0,
        1000,
    )
    assert stream.apply(refund_event("charge.refund.updated", 6, "failed")) is None  # the same failure, told again


def test_a_dashboard_refund_after_one_of_ours_failed_is_recorded() -> None:
    """Stripe's charge total leaves the failed refund out; so does the comparison (it was lost before)."""
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    refunded(stream, 400, "succeeded")
    stream.apply(refund_event("refund.failed", 5, "failed", failure_reason="expired_or_canceled_card"))

    dashboard = {"data": [{"id": "re_dashboard", "amount": 300}]}
    decided = stream.apply(
        stripe("charge.refunded", second=9, object_id="ch_1", amount_refunded=300, refunds=dashboard)
    )

    assert decided is not None and decided.type == ev.PROVIDER_REFUNDED
    assert [(r.amount, r.status) for r in stream.state.refunds] == [(400, "failed"), (300, "succeeded")]
    assert (stream.state.amount_refunded, stream.state.refundable) == (300, 700)


def dashboard_refunds(*refunds: tuple[str, int]) -> dict[str, Any]:
    """A charge's `refunds` list (newest first) of refunds `(id, amount)` given oldest first, all succeeded."""
    listed = [{"id": ref, "object": "refund", "amount": amount, "status": "succeeded"} for ref, amount in refunds]
    return {"object": "list", "data": listed[::-1], "has_more": False}


@pytest.mark.parametrize(
    ("failed", "refunded_after"), [("re_1", 300), ("re_2", 200)], ids=["the_older_fails", "the_latest_fails"]
)
def test_each_dashboard_refund_a_total_lists_is_recorded_so_a_later_failure_of_any_reverses_it(
    failed: str, refunded_after: int
) -> None:
    """Two dashboard refunds reported by one charge.refunded: recorded under one refund id (the latest's), a failure
    of the other reversed nothing (500 here, 300 at Stripe) and one of the latest reversed both (0 here)."""
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    listed = dashboard_refunds(("re_1", 200), ("re_2", 300))
    stream.apply(stripe("charge.refunded", second=5, object_id="ch_1", amount_refunded=500, refunds=listed))
    assert types(stream)[-2:] == [ev.PROVIDER_REFUNDED, ev.PROVIDER_REFUNDED]
    assert [(r.provider_reference, r.amount) for r in stream.state.refunds] == [("re_1", 200), ("re_2", 300)]
    assert len({r.id for r in stream.state.refunds}) == 2
    assert (stream.state.status, stream.state.amount_refunded) == (Status.PARTIALLY_REFUNDED, 500)

    failure = stripe("refund.failed", second=7, object_id=failed, payment_intent="pi_1", status="failed")
    reversed_ = stream.apply(failure)

    assert reversed_ is not None and reversed_.type == ev.REFUND_REVERSED
    assert (stream.state.amount_refunded, stream.state.refundable) == (refunded_after, 1000 - refunded_after)
    assert [r.status for r in stream.state.refunds if r.provider_reference == failed] == ["failed"]
    # Stripe's total now (as re-read for a later charge.refunded) adds nothing; the refund canceled changes nothing.
    now = stripe("charge.refunded", second=9, object_id="ch_1", amount_refunded=refunded_after, refunds=listed)
    assert stream.apply(now) is None
    assert stream.apply(stripe("charge.refund.updated", 9, object_id=failed, status="canceled")) is None
    assert stream.state.amount_refunded == refunded_after


def test_a_dashboard_refund_listed_after_ours_is_recorded_under_its_own_id_not_ours() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    ours = refunded(stream, 300, "succeeded")
    listed = dashboard_refunds(("re_dashboard", 200), (ours, 300))  # ours is the latest
    decided = stream.apply(stripe("charge.refunded", 9, object_id="ch_1", amount_refunded=500, refunds=listed))
    assert decided is not None and decided.data["provider_reference"] == "re_dashboard"

    stream.apply(stripe("refund.failed", 11, object_id="re_dashboard", payment_intent="pi_1", status="failed"))

    assert [(r.amount, r.status) for r in stream.state.refunds] == [(300, "succeeded"), (200, "failed")]
    assert stream.state.amount_refunded == 300


def test_refunds_listed_that_do_not_make_up_the_total_are_recorded_as_one_named_by_the_latest() -> None:
    """A listing older than the total (Stripe's current total re-read, the payload's list not): which refunds the
    rest is made of cannot be told, so it is one refund, as before."""
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    listed = dashboard_refunds(("re_1", 200))
    stream.apply(stripe("charge.refunded", 5, object_id="ch_1", amount_refunded=500, refunds=listed))
    assert [(r.provider_reference, r.amount) for r in stream.state.refunds] == [("re_1", 500)]


def test_a_failed_refund_a_total_still_lists_is_not_taken_as_part_of_it() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    listed = dashboard_refunds(("re_1", 200), ("re_2", 300))
    listed["data"][1]["status"] = "failed"  # re_1, failed before the total was read: not in it
    stream.apply(stripe("charge.refunded", 5, object_id="ch_1", amount_refunded=300, refunds=listed))
    assert [(r.provider_reference, r.amount) for r in stream.state.refunds] == [("re_2", 300)]
    assert stream.apply(stripe("refund.failed", 7, object_id="re_1", payment_intent="pi_1", status="failed")) is None
    assert stream.state.amount_refunded == 300


def test_several_dashboard_refunds_beyond_what_is_refundable_are_one_discrepancy() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    listed = dashboard_refunds(("re_1", 700), ("re_2", 800))
    decided = stream.apply(stripe("charge.refunded", 5, object_id="ch_1", amount_refunded=1500, refunds=listed))
    assert decided is not None and types(stream)[-1] == ev.PROVIDER_EVENT_DISCREPANCY
    assert len(stream.events) == 3 and stream.state.amount_refunded == 0


def test_a_full_refund_that_failed_stays_refunded_and_can_be_made_again() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    refunded(stream, 1000, "succeeded")
    stream.apply(refund_event("refund.failed", 5, "failed"))
    assert (stream.state.status, stream.state.amount_refunded, stream.state.refundable) == (Status.REFUNDED, 0, 1000)

    again = decisions.request_refund(stream.state, "cmd_again", "re_again", 500, None, "msg_3", "fp3")
    stream.events.append(again)
    answer = refund_result({"id": "re_at_stripe_2", "status": "succeeded", "amount": 500})
    stream.events.append(decisions.refund_outcome(stream.state, "cmd_again", answer))

    assert (stream.state.status, stream.state.amount_refunded, stream.state.refundable) == (Status.REFUNDED, 500, 500)


def test_a_refund_update_about_a_refund_not_ours_changes_nothing() -> None:
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    elsewhere = stripe("refund.failed", object_id="re_elsewhere", payment_intent="pi_1", status="failed")
    assert stream.apply(elsewhere) is None
    pending_call = Stream().outcome(Outcome.APPROVED, amount=1000)
    pending_call.events.append(
        decisions.request_refund(pending_call.state, "cmd_ref", "re_ours", 300, None, "msg_2", "fp2")
    )
    # no provider reference yet: it may be ours (its outcome not recorded yet), noted for that outcome to settle
    noted = pending_call.apply(refund_event("refund.failed", 5, "failed"))
    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED
    assert (pending_call.state.amount_refunded, pending_call.state.refund("re_ours").status) == (0, "pending")


def test_a_charge_voided_at_authorize_net_before_settlement_is_refunded_in_full() -> None:
    # Voiding an unsettled charge in Authorize.net's interface means the customer is never charged.
    stream = Stream(provider="authnet").outcome(Outcome.APPROVED, amount=1000)
    decided = stream.apply(authnet("void.created"))
    assert decided is not None and decided.type == ev.PROVIDER_REFUNDED
    assert (stream.state.status, stream.state.amount_refunded, stream.state.refundable) == (Status.REFUNDED, 1000, 0)
    assert stream.apply(authnet("void.created", second=2)) is None


def test_our_own_whole_refund_carried_out_as_a_void_is_not_counted_twice() -> None:
    stream = Stream(provider="authnet").outcome(Outcome.APPROVED, amount=1000)
    stream.events.append(decisions.request_refund(stream.state, "cmd_ref", "re_ours", None, None, "msg_2", "fp2"))
    noted = stream.apply(authnet("void.created"))  # our refund is under way: its outcome will say
    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED
    voided = ProviderResult(Outcome.APPROVED, reference="pi_1", details={"refunded_by": "void"})
    stream.events.extend(decisions.refund_outcome_events(stream.state, "cmd_ref", voided))
    assert types(stream)[-1] == ev.REFUND_SUCCEEDED  # the void was ours
    assert stream.apply(authnet("void.created", second=3)) is None
    assert (stream.state.status, stream.state.amount_refunded) == (Status.REFUNDED, 1000)
