"""Billing periods: calendar-correct month and year arithmetic, anchored as Stripe does it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from payments_billing import periods


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "interval", "count", "end"),
    [
        (at(2027, 1, 31), "month", 1, at(2027, 2, 28)),
        (at(2028, 1, 31), "month", 1, at(2028, 2, 29)),
        (at(2027, 3, 31), "month", 1, at(2027, 4, 30)),
        (at(2027, 11, 15), "month", 3, at(2028, 2, 15)),
        (at(2027, 12, 31), "month", 12, at(2028, 12, 31)),
        (at(2028, 2, 29), "year", 1, at(2029, 2, 28)),
        (at(2027, 6, 1), "year", 1, at(2028, 6, 1)),
        (at(2027, 12, 30), "week", 1, at(2028, 1, 6)),
        (at(2027, 2, 27), "day", 2, at(2027, 3, 1)),
    ],
)
def test_add_interval(start: datetime, interval: str, count: int, end: datetime) -> None:
    assert periods.add_interval(start, interval, count) == end


def test_periods_are_counted_from_the_anchor_so_a_clamped_month_does_not_drift() -> None:
    anchor = at(2027, 1, 31)
    assert periods.nth_period(anchor, "month", 1, 0) == periods.Period(anchor, at(2027, 2, 28))
    assert periods.nth_period(anchor, "month", 1, 1) == periods.Period(at(2027, 2, 28), at(2027, 3, 31))
    assert periods.nth_period(anchor, "month", 1, 2).end == at(2027, 4, 30)


def test_a_trial_is_the_first_period() -> None:
    assert periods.first_period(at(2027, 1, 1), "month", 1, 14) == periods.Period(at(2027, 1, 1), at(2027, 1, 15))
    assert periods.first_period(at(2027, 1, 1), "month", 1, None).end == at(2027, 2, 1)


def test_unknown_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        periods.add_interval(at(2027, 1, 1), "fortnight", 1)


@pytest.mark.parametrize(
    ("interval", "count", "valid"),
    [
        ("day", 1095, True),
        ("day", 1096, False),
        ("week", 156, True),
        ("week", 157, False),
        ("month", 36, True),
        ("month", 37, False),
        ("year", 3, True),
        ("year", 4, False),
        ("month", 0, False),
        ("hour", 1, False),
    ],
)
def test_interval_count_at_most_three_years(interval: str, count: int, valid: bool) -> None:
    assert periods.valid_interval_count(interval, count) is valid
