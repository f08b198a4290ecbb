"""The subscription domain (pure): fold, decisions, the status machine and every move it refuses."""

from __future__ import annotations

import itertools

import pytest
from payments_billing import subscription as domain
from payments_billing.events import DomainEvent
from payments_billing.pending import PendingChange
from payments_shared.errors import ApiError

T0 = "2027-01-31T00:00:00.000000Z"
T1 = "2027-02-01T00:00:00.000000Z"
T2 = "2027-02-02T00:00:00.000000Z"


def new(status: str = domain.ACTIVE, **overrides: object) -> domain.NewSubscription:
    fields: dict[str, object] = {
        "id": "sub_1",
        "workspace": "ws_a",
        "customer_id": "cus_1",
        "status": status,
        "amount": 1000,
        "currency": "usd",
        "interval": "month",
        "interval_count": 1,
        "quantity": 1,
        "provider": "sandbox",
        "current_period_start": T0,
        "current_period_end": "2027-02-28T00:00:00.000000Z",
        "provider_reference": "sub_sbx_1",
        "metadata": {"a": "1"},
    }
    fields.update(overrides)
    return domain.NewSubscription(**fields)  # type: ignore[arg-type]


def history(status: str = domain.ACTIVE) -> list[DomainEvent]:
    return [domain.decide_create(None, new(status), T0)]


def with_cancel(
    events: list[DomainEvent], at_period_end: bool, command_id: str = "cmd_cancel", at: str = T1
) -> list[DomainEvent]:
    """`events` and a cancel: requested, then its outcome once the provider carried it out."""
    requested = domain.decide_request_cancel(domain.fold(events), "ws_a", at_period_end, at, command_id)
    with_request = [*events, requested]
    pending = domain.fold(with_request)
    assert pending is not None and pending.pending_update is not None
    return [*with_request, domain.decide_cancel(pending, "ws_a", pending.pending_update, at)]


def canceled_history() -> list[DomainEvent]:
    return with_cancel(history(), at_period_end=False)


def test_create_folds_into_the_subscription_as_the_api_shows_it() -> None:
    subscription = domain.fold(history())
    assert subscription is not None
    shown = subscription.to_api()
    assert shown["object"] == "subscription"
    assert (shown["status"], shown["amount"], shown["quantity"], shown["cancel_at_period_end"]) == (
        "active",
        1000,
        1,
        False,
    )
    assert shown["canceled_at"] is None and shown["created_at"] == T0 == shown["updated_at"]


@pytest.mark.parametrize("status", [domain.INCOMPLETE, domain.TRIALING, domain.ACTIVE])
def test_a_subscription_may_start(status: str) -> None:
    subscription = domain.fold(history(status))
    assert subscription is not None and subscription.status == status


@pytest.mark.parametrize("status", [domain.CANCELED_STATUS, "paused"])
def test_a_subscription_cannot_start_canceled_or_unknown(status: str) -> None:
    with pytest.raises(ApiError) as raised:
        domain.decide_create(None, new(status), T0)
    assert raised.value.status == 400


def test_creating_twice_is_a_conflict() -> None:
    with pytest.raises(ApiError) as raised:
        domain.decide_create(domain.fold(history()), new(), T0)
    assert raised.value.status == 409


def test_update_changes_quantity_amount_and_merges_metadata() -> None:
    events = history()
    changes = domain.SubscriptionChanges({"quantity": 3, "amount": 1500, "metadata": {"a": "", "b": "2"}})
    events.append(domain.decide_update(domain.fold(events), "ws_a", changes, T1))
    subscription = domain.fold(events)
    assert subscription is not None
    assert (subscription.quantity, subscription.amount, dict(subscription.metadata)) == (3, 1500, {"b": "2"})
    assert subscription.updated_at == T1


def test_a_new_interval_starts_a_new_period_now_as_stripe_does() -> None:
    events = history()  # monthly, period T0 → 2027-02-28
    yearly = domain.SubscriptionChanges({"price": "price_y", "amount": 10000, "interval": "year", "interval_count": 1})
    events.append(domain.decide_update(domain.fold(events), "ws_a", yearly, T1))
    subscription = domain.fold(events)
    assert subscription is not None
    assert (subscription.current_period_start, subscription.current_period_end) == (T1, "2028-02-01T00:00:00.000000Z")


def test_a_new_interval_during_a_trial_keeps_the_trial_as_the_period() -> None:
    trial_end = "2027-03-02T00:00:00.000000Z"  # a 30-day trial from T0
    events: list[DomainEvent] = [
        domain.decide_create(
            None, new(domain.TRIALING, current_period_end=trial_end, trial_end=trial_end, price="price_m"), T0
        )
    ]
    weekly = domain.SubscriptionChanges({"price": "price_w", "amount": 300, "interval": "week", "interval_count": 1})
    events.append(domain.decide_update(domain.fold(events), "ws_a", weekly, T1))
    subscription = domain.fold(events)
    assert subscription is not None
    assert (subscription.status, subscription.interval, subscription.trial_end) == ("trialing", "week", trial_end)
    assert (subscription.current_period_start, subscription.current_period_end) == (T0, trial_end)
    # A change that ends the trial does start the new interval's period now.
    ending = domain.SubscriptionChanges({"interval": "day", "interval_count": 1, "status": domain.ACTIVE})
    ended = domain.fold([*events, domain.decide_update(subscription, "ws_a", ending, T1)])
    assert ended is not None
    assert (ended.current_period_start, ended.current_period_end) == (T1, "2027-02-02T00:00:00.000000Z")


def test_the_same_interval_or_a_reported_period_keeps_the_providers_period() -> None:
    same = domain.SubscriptionChanges({"price": "price_m2", "amount": 2000, "interval": "month", "interval_count": 1})
    unchanged = domain.fold([*history(), domain.decide_update(domain.fold(history()), "ws_a", same, T1)])
    assert unchanged is not None and unchanged.current_period_start == T0
    reported = domain.SubscriptionChanges(
        {"interval": "year", "current_period_start": T1, "current_period_end": "2028-01-15T00:00:00.000000Z"}
    )
    kept = domain.fold([*history(), domain.decide_update(domain.fold(history()), "ws_a", reported, T1)])
    assert kept is not None and kept.current_period_end == "2028-01-15T00:00:00.000000Z"


def test_update_ignores_fields_that_cannot_change() -> None:
    events = history()
    changes = domain.SubscriptionChanges({"customer_id": "cus_other", "workspace": "ws_b", "quantity": 2})
    events.append(domain.decide_update(domain.fold(events), "ws_a", changes, T1))
    subscription = domain.fold(events)
    assert subscription is not None
    assert (subscription.customer_id, subscription.workspace, subscription.quantity) == ("cus_1", "ws_a", 2)


def test_cancel_at_period_end_keeps_it_active_then_cancel_now_ends_it() -> None:
    events = with_cancel(history(), at_period_end=True, command_id="cmd_later")
    scheduled = domain.fold(events)
    assert scheduled is not None and scheduled.pending_update is None
    # Stripe's canceled_at: the time the cancel at period end was asked, though it is still active.
    assert (scheduled.status, scheduled.cancel_at_period_end, scheduled.canceled_at) == ("active", True, T1)
    ended = domain.fold(with_cancel(events, at_period_end=False, command_id="cmd_now", at=T2))
    assert ended is not None and ended.pending_update is None
    assert (ended.status, ended.canceled_at, ended.cancel_at_period_end) == ("canceled", T2, False)


def test_the_period_end_of_a_cancel_asked_earlier_keeps_the_time_it_was_asked() -> None:
    events = with_cancel(history(), at_period_end=True)
    period_end = domain.decide_reported(domain.fold(events), "ws_a", {"status": "canceled"}, T2, T2)
    assert period_end is not None
    ended = domain.fold([*events, period_end])
    assert ended is not None and (ended.status, ended.canceled_at) == ("canceled", T1)


def test_a_cancel_requested_while_another_change_is_open_is_refused_until_it_finishes() -> None:
    events = [*history(), domain.decide_request_cancel(domain.fold(history()), "ws_a", False, T1, "cmd_first")]
    with pytest.raises(ApiError) as raised:
        domain.decide_request_cancel(domain.fold(events), "ws_a", True, T1, "cmd_second")
    assert (raised.value.status, raised.value.code) == (409, "operation_in_progress")


def test_a_cancel_whose_cancellation_the_provider_reported_first_finishes_as_it_was_reported() -> None:
    """The provider's webhook about this very cancel is applied between its call and its outcome: the outcome
    succeeds, keeping the reported cancellation's time."""
    requested = [*history(), domain.decide_request_cancel(domain.fold(history()), "ws_a", False, T0, "cmd_cancel")]
    reported = domain.decide_reported(domain.fold(requested), "ws_a", {"status": "canceled"}, T0, T0)
    assert reported is not None
    before_outcome = domain.fold([*requested, reported])
    assert before_outcome is not None and before_outcome.pending_update is not None

    outcome = domain.decide_cancel(before_outcome, "ws_a", before_outcome.pending_update, T1)

    finished = domain.fold([*requested, reported, outcome])
    assert outcome.data["command_id"] == "cmd_cancel"
    assert finished is not None and finished.pending_update is None
    assert (finished.status, finished.canceled_at) == ("canceled", T0)


def test_cancel_at_period_end_can_be_undone_by_an_update() -> None:
    events = with_cancel(history(), at_period_end=True)
    events.append(
        domain.decide_update(
            domain.fold(events), "ws_a", domain.SubscriptionChanges({"cancel_at_period_end": False}), T1
        )
    )
    subscription = domain.fold(events)
    assert subscription is not None and (subscription.cancel_at_period_end, subscription.canceled_at) == (False, None)


def test_an_update_whose_answer_shows_it_canceled_sets_canceled_at() -> None:
    """The provider canceled it before the update reached it (out of band, its webhook not here yet): the update's
    answer brings `canceled`, and the subscription shows when, as Stripe never shows a canceled one without it."""
    events = history()
    changes = domain.SubscriptionChanges({"metadata": {"b": "2"}, "status": domain.CANCELED_STATUS})
    events.append(domain.decide_update(domain.fold(events), "ws_a", changes, T1))
    subscription = domain.fold(events)
    assert subscription is not None
    assert (subscription.status, subscription.canceled_at, subscription.cancel_at_period_end) == ("canceled", T1, False)


def test_an_update_of_a_canceled_subscription_keeps_its_metadata_only() -> None:
    canceled = domain.fold(canceled_history())
    changes = domain.SubscriptionChanges({"metadata": {"b": "2"}, "quantity": 5, "status": "active"})
    updated = domain.fold([*canceled_history(), domain.decide_update(canceled, "ws_a", changes, T2, None, True)])
    assert updated is not None and canceled is not None
    assert (updated.metadata, updated.quantity, updated.status) == ({"a": "1", "b": "2"}, 1, "canceled")
    assert updated.canceled_at == canceled.canceled_at


def test_nothing_changes_a_canceled_subscription() -> None:
    canceled = domain.fold(canceled_history())
    refused = [
        lambda: domain.decide_update(canceled, "ws_a", domain.SubscriptionChanges({"quantity": 2}), T1),
        lambda: domain.decide_request_cancel(canceled, "ws_a", False, T1, "cmd_again"),
        lambda: domain.decide_request_cancel(canceled, "ws_a", True, T1, "cmd_again"),
    ]
    for decide in refused:
        with pytest.raises(ApiError) as raised:
            decide()
        assert raised.value.status == 409
    assert domain.visible(canceled, "ws_a").status == "canceled"  # still readable
    assert domain.decide_reported(canceled, "ws_a", {"status": "active"}, T1, T1) is None  # a late report


def test_another_workspace_or_an_unknown_id_is_not_found() -> None:
    subscription = domain.fold(history())
    refused = [
        lambda: domain.visible(subscription, "ws_b"),
        lambda: domain.decide_update(subscription, "ws_b", domain.SubscriptionChanges({"quantity": 2}), T1),
        lambda: domain.decide_request_cancel(subscription, "ws_b", False, T1, "cmd_cancel"),
        lambda: domain.decide_request_cancel(None, "ws_a", False, T1, "cmd_cancel"),
    ]
    for decide in refused:
        with pytest.raises(ApiError) as raised:
            decide()
        assert raised.value.status == 404


ALLOWED = {
    ("incomplete", "active"),
    ("incomplete", "canceled"),
    ("trialing", "active"),
    ("trialing", "past_due"),
    ("trialing", "unpaid"),
    ("trialing", "canceled"),
    ("active", "past_due"),
    ("active", "unpaid"),
    ("active", "canceled"),
    ("past_due", "active"),
    ("past_due", "unpaid"),
    ("past_due", "canceled"),
    ("unpaid", "active"),
    ("unpaid", "canceled"),
}


@pytest.mark.parametrize(("current", "new_status"), list(itertools.product(domain.STATUSES, repeat=2)))
def test_status_moves(current: str, new_status: str) -> None:
    if current == new_status or (current, new_status) in ALLOWED:
        domain.check_move(current, new_status)
        return
    with pytest.raises(ApiError) as raised:
        domain.check_move(current, new_status)
    assert raised.value.status == 409


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ApiError) as raised:
        domain.check_move(domain.ACTIVE, "paused")
    assert raised.value.status == 400


def test_an_update_with_a_forbidden_status_move_is_refused() -> None:
    with pytest.raises(ApiError) as raised:
        domain.decide_update(
            domain.fold(history(domain.INCOMPLETE)), "ws_a", domain.SubscriptionChanges({"status": "past_due"}), T1
        )
    assert raised.value.status == 409


def test_a_report_records_the_new_status_and_period() -> None:
    events = history(domain.TRIALING)
    report = {"status": "active", "current_period_start": T1, "current_period_end": "2027-03-01T00:00:00.000000Z"}
    event = domain.decide_reported(domain.fold(events), "ws_a", report, T1, T1)
    assert event is not None and event.type == domain.STATUS_CHANGED
    events.append(event)
    subscription = domain.fold(events)
    assert subscription is not None
    assert (subscription.status, subscription.current_period_start, subscription.provider_event_at) == (
        "active",
        T1,
        T1,
    )
    assert domain.decide_reported(subscription, "ws_a", report, T1, T1) is None  # nothing new


def test_reports_apply_in_the_providers_order() -> None:
    events = history()
    events.append(domain.decide_reported(domain.fold(events), "ws_a", {"status": "past_due"}, T1, T1))  # type: ignore[arg-type]
    older = "2027-01-31T12:00:00.000000Z"
    assert domain.decide_reported(domain.fold(events), "ws_a", {"status": "active"}, older, T1) is None
    newer = "2027-02-02T00:00:00.000000Z"
    assert domain.decide_reported(domain.fold(events), "ws_a", {"status": "active"}, newer, T1) is not None


@pytest.mark.parametrize("status", ["incomplete", "trialing", "paused"])
def test_a_report_of_a_forbidden_move_changes_nothing_but_is_noted(status: str) -> None:
    events = history()
    before = domain.fold(events)
    noted = domain.decide_reported(before, "ws_a", {"status": status}, T1, T1)
    assert noted is not None and noted.type == domain.REPORT_NOTED
    after = domain.fold([*events, noted])
    assert after is not None and before is not None and after.to_api() == before.to_api()


def test_an_older_report_after_a_newer_one_that_changed_nothing_is_not_applied() -> None:
    """invoice.paid (now, nothing to change) then a late invoice.payment_failed (100 s earlier): Stripe has the
    subscription active; applying the late failure would show past_due."""
    events = history()
    newer, older = "2027-02-02T00:01:40.000000Z", "2027-02-02T00:00:00.000000Z"
    noted = domain.decide_reported(domain.fold(events), "ws_a", {"status": "active"}, newer, T1)
    assert noted is not None and noted.type == domain.REPORT_NOTED
    events.append(noted)

    assert domain.decide_reported(domain.fold(events), "ws_a", {"status": "past_due"}, older, T1) is None
    assert domain.decide_reported(domain.fold(events), "ws_a", {"status": "active"}, newer, T1) is None  # again


def test_a_report_about_another_workspace_is_not_found() -> None:
    with pytest.raises(ApiError):
        domain.decide_reported(domain.fold(history()), "ws_b", {"status": "past_due"}, T1, T1)


def test_a_reported_cancellation_is_a_cancel() -> None:
    events = history()
    event = domain.decide_reported(domain.fold(events), "ws_a", {"status": "canceled"}, T1, T1)
    assert event is not None and event.type == domain.CANCELED
    events.append(event)
    subscription = domain.fold(events)
    assert subscription is not None and (subscription.status, subscription.canceled_at) == ("canceled", T1)


def test_a_period_may_bill_up_to_the_largest_amount_and_no_more() -> None:
    domain.check_period_amount(99_999_999, 1, "quantity")
    domain.check_period_amount(33_333_333, 3, "quantity")
    with pytest.raises(ApiError) as refused:
        domain.check_period_amount(33_333_334, 3, "amount")
    assert (refused.value.status, refused.value.param) == (400, "amount")
    assert "100000002" in refused.value.message


def test_a_change_naming_a_field_of_a_newer_version_is_folded_without_it() -> None:
    events = history()
    events.append(DomainEvent(domain.UPDATED, {"changes": {"quantity": 3, "billing_anchor": "x"}, "updated_at": T1}))
    reported = {"changes": {"status": "past_due", "pause_collection": {}}, "updated_at": T1, "provider_created": T1}
    events.append(DomainEvent(domain.STATUS_CHANGED, reported))
    subscription = domain.fold(events)
    assert subscription is not None
    assert (subscription.quantity, subscription.status, subscription.updated_at) == (3, "past_due", T1)


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        ({"quantity": 2}, True),
        ({"amount": 999}, True),
        ({"price": "price_x"}, True),
        ({"quantity": 1, "metadata": {"a": "b"}, "cancel_at_period_end": True}, False),  # bills the same
    ],
)
def test_an_incomplete_subscription_changes_no_billing(parameters: dict[str, object], refused: bool) -> None:
    incomplete = domain.fold(history(domain.INCOMPLETE))
    pending = PendingChange("cmd_update", T1, parameters, {})
    if not refused:
        assert domain.decide_request_update(incomplete, "ws_a", pending).type == domain.UPDATE_REQUESTED
        return
    with pytest.raises(ApiError) as raised:
        domain.decide_request_update(incomplete, "ws_a", pending)
    assert (raised.value.status, raised.value.code) == (409, "subscription_incomplete")
    active = domain.fold(history())
    assert domain.decide_request_update(active, "ws_a", pending).type == domain.UPDATE_REQUESTED
