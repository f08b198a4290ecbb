"""A refund made at the provider (Stripe's dashboard, Authorize.net's merchant interface) reported while a refund of
ours is under way (pure): noted, then settled with our refund's outcome, in the same append; counted once however
often the report is delivered or the stream is folded again."""

from __future__ import annotations

from typing import Any

import pytest
import stripe as stripe_sdk
from payments_shared.providers.port import Outcome, ProviderResult
from payments_shared.providers.stripe_errors import refund_refusal, result_for_error
from payments_shared.providers.stripe_results import refund_result
from payments_transactions.domain import decisions
from payments_transactions.domain import events as ev
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.provider_events import ProviderEvent, with_current_state
from payments_transactions.domain.state import Status, Transaction
from payments_transactions.views import operation_reply

from tests.unit.test_webhook_apply_transactions import Stream, authnet, stripe, types
from tests.unit.test_webhook_current_state import authnet_refund


def requested(stream: Stream, amount: int, command_id: str = "cmd_ref") -> Stream:
    refund_id = f"re_{command_id}"
    stream.events.append(decisions.request_refund(stream.state, command_id, refund_id, amount, None, "m", "fp"))
    return stream


def answered(stream: Stream, result: ProviderResult, command_id: str = "cmd_ref") -> list[str]:
    """Our refund's outcome as the driver appends it (one append): the types of the events appended."""
    appended = decisions.refund_outcome_events(stream.state, command_id, result)
    stream.events.extend(appended)
    return [event.type for event in appended]


def stripe_unavailable() -> ProviderResult:
    return ProviderResult(Outcome.RETRYABLE, message="Stripe answered 503.")


def stripe_too_large() -> ProviderResult:
    """Stripe refusing our refund: less than it asks for is left to refund (a refund made in the dashboard)."""
    message = "Refund amount ($6.00) is greater than unrefunded amount on charge ($5.00)"
    body = {"error": {"type": "invalid_request_error", "code": "amount_too_large", "param": "amount"}}
    error = stripe_sdk.InvalidRequestError(message, "amount", code="amount_too_large", json_body=body, http_status=400)
    return refund_refusal(result_for_error(error))


def stripe_refunded(total: int, second: int, refund_id: str = "re_dashboard") -> ProviderEvent:
    refunds = {"data": [{"id": refund_id}]}
    return stripe("charge.refunded", second=second, object_id="ch_1", amount_refunded=total, refunds=refunds)


def authnet_refunded(trans_id: str, amount: int) -> ProviderEvent:
    return with_current_state(authnet_refund(trans_id), {"ref_trans_id": "pi_1", "settle_amount": amount})


def money(stream: Stream) -> tuple[Status, int, int]:
    state = stream.state
    return state.status, state.amount_refunded, state.refundable


def refunded_elsewhere(stream: Stream) -> list[tuple[int, Any]]:
    return [(e.data["amount"], e.data["provider_reference"]) for e in stream.events if e.type == ev.PROVIDER_REFUNDED]


# ---- Stripe ----------------------------------------------------------------------------------------------------


def test_stripe_a_dashboard_refund_noted_while_ours_is_open_is_recorded_when_stripe_refuses_ours() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    assert answered(stream, stripe_unavailable()) == [ev.PROVIDER_CALL_FAILED]  # open, to be driven again
    dashboard = stripe_refunded(500, second=5)

    noted = stream.apply(dashboard)

    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED
    assert (noted.data["amount"], noted.data["counted"], noted.data["open_refunds"]) == (500, 0, ["cmd_ref"])
    assert money(stream) == (Status.CAPTURED, 0, 400)  # not yet known whose the 500 are
    assert stream.apply(dashboard) is None  # redelivered

    refused = stripe_too_large()
    assert refused.details.get("conflict") == "amount_too_large"
    assert answered(stream, refused) == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED]

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 500, 500)
    assert refunded_elsewhere(stream) == [(500, "re_dashboard")]
    assert stream.state.noted_refund_reports == []
    assert stream.apply(dashboard) is None  # redelivered after: nothing twice
    assert stream.apply(stripe_refunded(500, second=9)) is None  # Stripe telling the same total again
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 500, 500)


def test_stripe_a_dashboard_refund_noted_while_ours_is_open_is_recorded_when_ours_succeeds() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 300)
    stream.apply(stripe_refunded(800, second=5))  # Stripe had carried ours out: 300 + 500 from the dashboard

    ours = refund_result({"id": "re_ours_at_stripe", "status": "succeeded", "amount": 300})
    assert answered(stream, ours) == [ev.REFUND_SUCCEEDED, ev.PROVIDER_REFUNDED]

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 800, 200)
    assert refunded_elsewhere(stream) == [(500, "re_dashboard")]
    assert stream.apply(stripe_refunded(800, second=9, refund_id="re_ours_at_stripe")) is None


def test_stripe_a_total_reported_before_ours_was_carried_out_is_completed_by_the_next_one() -> None:
    """Ours is taken as held in a total told before its outcome (never more than Stripe refunded); if Stripe
    carried it out after that report, the charge.refunded it sends for ours brings the rest."""
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 300)
    stream.apply(stripe_refunded(500, second=5))

    answered(stream, refund_result({"id": "re_ours_at_stripe", "status": "succeeded", "amount": 300}))
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 500, 500)
    stream.apply(stripe_refunded(800, second=9, refund_id="re_ours_at_stripe"))

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 800, 200)


def test_stripe_two_reports_noted_count_as_the_larger_total_once() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    stream.apply(stripe_refunded(200, second=5, refund_id="re_dash_1"))
    stream.apply(stripe_refunded(300, second=6, refund_id="re_dash_2"))
    assert [report.amount for report in stream.state.noted_refund_reports] == [200, 300]

    assert answered(stream, stripe_too_large()) == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED]

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 300, 700)
    assert refunded_elsewhere(stream) == [(300, "re_dash_2")]


def test_stripe_a_noted_total_is_settled_by_the_last_of_our_refunds_under_way() -> None:
    stream = requested(requested(Stream().outcome(Outcome.APPROVED, amount=1000), 300, "cmd_a"), 300, "cmd_b")
    stream.apply(stripe_refunded(700, second=5))  # 300 of ours (one of them) and 400 from the dashboard

    assert answered(stream, refund_result({"id": "re_a", "status": "succeeded"}), "cmd_a") == [ev.REFUND_SUCCEEDED]
    assert len(stream.state.noted_refund_reports) == 1  # the other is still under way
    assert answered(stream, stripe_too_large(), "cmd_b") == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED]

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 700, 300)


def test_stripe_a_noted_total_is_judged_against_what_was_counted_when_it_came() -> None:
    """A refund of ours the total held, failed by Stripe since (refund.failed): not taken for a dashboard refund."""
    stream = Stream().outcome(Outcome.APPROVED, amount=1000)
    requested(stream, 300, "cmd_a")
    answered(stream, refund_result({"id": "re_a", "status": "succeeded", "amount": 300}), "cmd_a")
    requested(stream, 200, "cmd_b")
    stream.apply(stripe_refunded(400, second=5))  # 300 of ours and 100 from the dashboard
    reversed_ = stripe("refund.failed", second=6, object_id="re_a", payment_intent="pi_1", status="failed")
    assert (decided := stream.apply(reversed_)) is not None and decided.type == ev.REFUND_REVERSED

    answered(stream, stripe_too_large(), "cmd_b")

    assert refunded_elsewhere(stream) == [(100, "re_dashboard")]
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 100, 900)


def test_stripe_a_noted_total_above_what_can_be_refunded_is_a_discrepancy() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    stream.apply(stripe_refunded(1500, second=5))

    assert answered(stream, stripe_too_large()) == [ev.REFUND_FAILED, ev.PROVIDER_EVENT_DISCREPANCY]
    assert money(stream) == (Status.CAPTURED, 0, 1000)


def test_a_retryable_failure_leaves_the_report_noted() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    stream.apply(stripe_refunded(500, second=5))
    assert answered(stream, stripe_unavailable()) == [ev.PROVIDER_CALL_FAILED]
    assert len(stream.state.noted_refund_reports) == 1


def test_the_fold_is_the_same_on_replay_and_counts_a_noted_report_once() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    stream.apply(stripe_refunded(500, second=5))
    answered(stream, stripe_too_large())
    recorded = stream.recorded()

    again = Transaction.from_events(recorded)
    prefix = Transaction.from_events(recorded[:-1])  # the outcome alone (never stored so: one append)

    assert again is not None and (again.amount_refunded, again.noted_refund_reports) == (500, [])
    assert prefix is not None and prefix.noted_refund_reports == [] and prefix.amount_refunded == 0
    with pytest.raises(decisions.DomainError):  # a redelivered command: the refund has its outcome
        decisions.refund_outcome_events(stream.state, "cmd_ref", stripe_too_large())


# ---- Stripe: a refund's status told before our refund's outcome ----------------------------------------------
# The worker crashed after Stripe created our refund (re_X), before its outcome was appended; re-driven with the
# same idempotency key it gets re_X back. Stripe's refund.updated/refund.failed for re_X may come in between.


def refund_status(status: str, refund_id: str = "re_X", second: int = 5, **obj: Any) -> ProviderEvent:
    return stripe("refund.failed" if status == "failed" else "refund.updated", second, refund_id, status=status, **obj)


def ours_at_stripe(status: str, refund_id: str = "re_X") -> ProviderResult:
    return refund_result({"id": refund_id, "status": status, "amount": 600, "payment_intent": "pi_1"})


def refund_view(stream: Stream) -> tuple[str, str | None]:
    refund = stream.state.refund("re_cmd_ref")
    return refund.status, refund.failure_reason


def test_stripe_a_refund_failed_before_our_outcome_reverses_it_in_the_outcomes_append() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    failed = refund_status("failed", failure_reason="expired_or_canceled_card")

    noted = stream.apply(failed)

    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED
    assert (noted.data["kind"], noted.data["reference"], noted.data["status"]) == ("refund_status", "re_X", "failed")
    assert answered(stream, ours_at_stripe("pending")) == [ev.REFUND_SUCCEEDED, ev.REFUND_REVERSED]

    assert refund_view(stream) == ("failed", "expired_or_canceled_card")
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 0, 1000)  # the status stays (API.md), the money is back
    assert stream.state.noted_refund_reports == []
    assert stream.apply(failed) is None  # redelivered after: nothing twice
    assert stream.apply(refund_status("failed", second=9)) is None  # told again by another event
    again = Transaction.from_events(stream.recorded())
    assert again is not None and (again.amount_refunded, again.refundable) == (0, 1000)


def test_stripe_a_refund_succeeded_before_our_pending_outcome_settles_it_in_the_outcomes_append() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    stream.apply(refund_status("succeeded"))

    assert answered(stream, ours_at_stripe("pending")) == [ev.REFUND_SUCCEEDED, ev.REFUND_SETTLED]

    assert refund_view(stream) == ("succeeded", None)
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 600, 400)
    assert stream.apply(refund_status("succeeded", second=9)) is None


def test_stripe_a_refund_status_naming_no_refund_known_is_dropped_with_our_outcome_in_the_audit_trail() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    noted = stream.apply(refund_status("failed", refund_id="re_other"))
    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED  # it might have been ours

    assert answered(stream, ours_at_stripe("pending")) == [ev.REFUND_SUCCEEDED, ev.PROVIDER_REFUND_REPORT_DROPPED]

    dropped = stream.events[-1].data
    assert (dropped["noted_report"], dropped["reference"], dropped["status"]) == (
        noted.data["webhook_event_id"],
        "re_other",
        "failed",
    )
    assert refund_view(stream) == ("pending", None)
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 600, 400)
    assert stream.state.noted_refund_reports == []


# A dashboard refund (re_dashboard) reported by charge.refunded and then failed by Stripe (refund.failed), both while
# a refund of ours is under way: the dashboard refund that our outcome's append records is the refund the failure
# names, so it is reversed in that append, as it would have been had both reports come after our outcome.


def test_stripe_a_dashboard_refund_failed_while_ours_is_open_is_reversed_when_ours_succeeds() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 300)
    stream.apply(stripe_refunded(500, second=5))  # ours is taken as held in it: 200 from the dashboard
    failed = refund_status("failed", refund_id="re_dashboard", second=6, failure_reason="expired_or_canceled_card")
    assert (noted := stream.apply(failed)) is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED

    assert answered(stream, refund_result({"id": "re_X", "status": "succeeded"})) == [
        ev.REFUND_SUCCEEDED,
        ev.PROVIDER_REFUNDED,
        ev.REFUND_REVERSED,
    ]

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 300, 700)  # Stripe: 300 refunded (ours), 700 refundable
    dashboard = next(refund for refund in stream.state.refunds if refund.provider_reference == "re_dashboard")
    assert (dashboard.status, dashboard.failure_reason) == ("failed", "expired_or_canceled_card")
    assert stream.apply(failed) is None  # redelivered after: nothing twice
    assert stream.apply(refund_status("failed", refund_id="re_dashboard", second=9)) is None
    # Stripe's charge.refunded for ours, its total re-read: 300, all counted
    assert stream.apply(stripe_refunded(300, second=10, refund_id="re_X")) is None
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 300, 700)


def test_stripe_a_dashboard_refund_failed_while_ours_is_open_is_reversed_when_stripe_refuses_ours() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    answered(stream, stripe_unavailable())
    stream.apply(stripe_refunded(500, second=5))
    stream.apply(refund_status("failed", refund_id="re_dashboard", second=6))

    assert answered(stream, stripe_too_large()) == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED, ev.REFUND_REVERSED]

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 0, 1000)
    assert stream.state.noted_refund_reports == []
    again = Transaction.from_events(stream.recorded())
    assert again is not None and (again.amount_refunded, again.refundable) == (0, 1000)


# Two dashboard refunds (re_1: 200, then re_2: 300) in one total noted while a refund of ours is under way: once our
# refund's outcome settles it, each is recorded with its own id and amount, so a failure of either reverses it.
# Before, the whole excess was one refund named by the latest listed (re_2): re_1's failure reversed nothing.


def listing(*refunds: tuple[str, int]) -> dict[str, Any]:
    """A charge's `refunds` (newest first) of refunds `(id, amount)` given oldest first."""
    listed = [{"id": ref, "object": "refund", "amount": amount, "status": "succeeded"} for ref, amount in refunds]
    return {"object": "list", "data": listed[::-1]}


def total_listing(total: int, second: int, *refunds: tuple[str, int]) -> ProviderEvent:
    listed = listing(*refunds)
    return stripe("charge.refunded", second=second, object_id="ch_1", amount_refunded=total, refunds=listed)


def test_stripe_two_dashboard_refunds_noted_while_ours_is_open_are_each_recorded_when_stripe_refuses_ours() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    answered(stream, stripe_unavailable())
    noted = stream.apply(total_listing(500, 5, ("re_1", 200), ("re_2", 300)))
    assert noted is not None and [r["id"] for r in noted.data["refunds"]] == ["re_2", "re_1"]

    assert answered(stream, stripe_too_large()) == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED, ev.PROVIDER_REFUNDED]
    assert refunded_elsewhere(stream) == [(200, "re_1"), (300, "re_2")]
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 500, 500)

    reversed_ = stream.apply(refund_status("failed", refund_id="re_1", second=9))
    assert reversed_ is not None and reversed_.type == ev.REFUND_REVERSED
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 300, 700)  # as at Stripe
    again = Transaction.from_events(stream.recorded())
    assert again is not None and (again.amount_refunded, again.refundable) == (300, 700)


def test_stripe_dashboard_refunds_noted_with_ours_in_the_total_are_each_recorded_when_ours_succeeds() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 300)
    stream.apply(total_listing(800, 5, ("re_1", 200), ("re_2", 300), ("re_ours_at_stripe", 300)))

    ours = refund_result({"id": "re_ours_at_stripe", "status": "succeeded", "amount": 300})
    assert answered(stream, ours) == [ev.REFUND_SUCCEEDED, ev.PROVIDER_REFUNDED, ev.PROVIDER_REFUNDED]

    assert refunded_elsewhere(stream) == [(200, "re_1"), (300, "re_2")]
    stream.apply(refund_status("failed", refund_id="re_2", second=9))
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 500, 500)
    assert [r.status for r in stream.state.refunds] == ["succeeded", "succeeded", "failed"]


def test_stripe_a_total_noted_before_its_listing_was_kept_settles_as_one_refund_as_it_did() -> None:
    """A stream recorded before the listing was kept on the noted report folds and settles as it did then."""
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    answered(stream, stripe_unavailable())
    stream.apply(total_listing(500, 5, ("re_1", 200), ("re_2", 300)))
    noted = stream.events[-1]
    stream.events[-1] = DomainEvent(noted.type, {k: v for k, v in noted.data.items() if k != "refunds"})

    assert answered(stream, stripe_too_large()) == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED]
    assert refunded_elsewhere(stream) == [(500, "re_2")]


def test_stripe_a_failure_noted_after_a_total_of_two_dashboard_refunds_reverses_the_one_it_names() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    answered(stream, stripe_unavailable())
    stream.apply(total_listing(500, 5, ("re_1", 200), ("re_2", 300)))
    stream.apply(refund_status("failed", refund_id="re_1", second=6))

    appended = answered(stream, stripe_too_large())

    assert appended == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED, ev.PROVIDER_REFUNDED, ev.REFUND_REVERSED]
    assert stream.events[-1].data["refund_id"] == stream.events[-3].data["refund_id"]  # re_1's
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 300, 700)


def test_stripe_a_refund_failure_noted_before_the_total_is_not_applied_to_the_total() -> None:
    """Told first, the failure named no refund known: a total re-read after it no longer holds the failed refund
    (were both to come after our outcome, the failure would be dropped and the total counted)."""
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    answered(stream, stripe_unavailable())
    stream.apply(refund_status("failed", refund_id="re_dashboard", second=5))
    stream.apply(stripe_refunded(500, second=6))

    assert answered(stream, stripe_too_large()) == [
        ev.REFUND_FAILED,
        ev.PROVIDER_REFUNDED,
        ev.PROVIDER_REFUND_REPORT_DROPPED,
    ]
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 500, 500)


def test_stripe_a_refund_status_redelivered_before_our_outcome_is_noted_once() -> None:
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 600)
    failed = refund_status("failed")
    stream.apply(failed)

    assert stream.apply(failed) is None
    assert [report.reference for report in stream.state.noted_refund_reports] == ["re_X"]
    assert answered(stream, ours_at_stripe("pending")) == [ev.REFUND_SUCCEEDED, ev.REFUND_REVERSED]
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 0, 1000)


def test_stripe_a_refund_status_is_settled_by_its_own_outcome_while_another_of_ours_is_under_way() -> None:
    stream = requested(requested(Stream().outcome(Outcome.APPROVED, amount=1000), 300, "cmd_a"), 300, "cmd_b")
    stream.apply(refund_status("failed", refund_id="re_a"))

    assert answered(stream, refund_result({"id": "re_a", "status": "pending"}), "cmd_a") == [
        ev.REFUND_SUCCEEDED,
        ev.REFUND_REVERSED,
    ]
    assert stream.state.noted_refund_reports == []
    assert answered(stream, refund_result({"id": "re_b", "status": "succeeded"}), "cmd_b") == [ev.REFUND_SUCCEEDED]
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 300, 700)


# ---- Authorize.net ---------------------------------------------------------------------------------------------


def test_authnet_a_merchant_refund_noted_while_ours_is_open_is_recorded_when_ours_fails() -> None:
    stream = requested(Stream(provider="authnet").outcome(Outcome.APPROVED, amount=4500), 3000)
    merchant = authnet_refunded("rf_merchant", 2000)

    noted = stream.apply(merchant)
    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED
    assert stream.apply(merchant) is None  # redelivered

    refused = ProviderResult(Outcome.PERMANENT, details={"reason_code": "55", "conflict": "amount_too_large"})
    assert answered(stream, refused) == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED]

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 2000, 2500)
    assert refunded_elsewhere(stream) == [(2000, "rf_merchant")]
    assert stream.apply(merchant) is None
    assert stream.apply(authnet_refunded("rf_merchant", 2000)) is None  # told again by another notification


def test_authnet_a_merchant_refund_noted_while_ours_is_open_is_recorded_when_ours_succeeds() -> None:
    stream = requested(Stream(provider="authnet").outcome(Outcome.APPROVED, amount=4500), 1000)
    stream.apply(authnet_refunded("rf_merchant", 2000))
    stream.apply(authnet_refunded("rf_ours", 1000))  # the notification of our own refund, before its outcome

    assert answered(stream, ProviderResult(Outcome.APPROVED, reference="rf_ours")) == [
        ev.REFUND_SUCCEEDED,
        ev.PROVIDER_REFUNDED,
    ]

    assert money(stream) == (Status.PARTIALLY_REFUNDED, 3000, 1500)
    assert refunded_elsewhere(stream) == [(2000, "rf_merchant")]


def test_authnet_two_merchant_refunds_noted_are_each_recorded_once() -> None:
    stream = requested(Stream(provider="authnet").outcome(Outcome.APPROVED, amount=4500), 1000)
    stream.apply(authnet_refunded("rf_one", 500))
    stream.apply(authnet_refunded("rf_two", 700))
    stream.apply(authnet_refunded("rf_one", 500))  # the first, told by a second notification

    answered(stream, ProviderResult(Outcome.PERMANENT, message="declined by the processor"))

    assert refunded_elsewhere(stream) == [(500, "rf_one"), (700, "rf_two")]
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 1200, 3300)


def test_authnet_merchant_refunds_beyond_what_can_be_refunded_are_a_discrepancy() -> None:
    stream = requested(Stream(provider="authnet").outcome(Outcome.APPROVED, amount=4500), 1000)
    stream.apply(authnet_refunded("rf_one", 3000))
    stream.apply(authnet_refunded("rf_two", 2000))

    types_appended = answered(stream, ProviderResult(Outcome.APPROVED, reference="rf_ours"))

    assert types_appended == [ev.REFUND_SUCCEEDED, ev.PROVIDER_REFUNDED, ev.PROVIDER_EVENT_DISCREPANCY]
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 4000, 500)


def test_authnet_a_void_in_the_merchant_interface_while_our_partial_refund_is_open() -> None:
    """Before settlement a partial refund is refused (not settled); the void made meanwhile refunds it all."""
    stream = requested(Stream(provider="authnet").outcome(Outcome.APPROVED, amount=1000), 300)
    noted = stream.apply(authnet("void.created"))
    assert noted is not None and noted.type == ev.PROVIDER_REFUND_REPORT_NOTED

    not_settled = ProviderResult(Outcome.PERMANENT, details={"reason_code": "54", "conflict": "charge_not_settled"})
    assert answered(stream, not_settled) == [ev.REFUND_FAILED, ev.PROVIDER_REFUNDED]

    assert money(stream) == (Status.REFUNDED, 1000, 0)
    assert types(stream)[-1] == ev.PROVIDER_REFUNDED


def test_our_refunds_answer_counts_the_report_its_outcome_settled() -> None:
    # The outcome and the dashboard refund it settles are one append: the refund's reply (and its replay) shows
    # the transaction after both, not an amount_refunded the stream never held.
    stream = requested(Stream().outcome(Outcome.APPROVED, amount=1000), 300)
    answered(stream, stripe_unavailable())
    stream.apply(stripe_refunded(500, second=5))
    assert answered(stream, ProviderResult(Outcome.APPROVED, reference="re_ours")) == [
        ev.REFUND_SUCCEEDED,
        ev.PROVIDER_REFUNDED,
    ]

    reply = operation_reply(stream.recorded(), "cmd_ref")

    assert (reply["status"], reply["body"]["status"], reply["body"]["amount_refunded"]) == (
        200,
        "partially_refunded",
        500,
    )
    assert money(stream) == (Status.PARTIALLY_REFUNDED, 500, 500)
