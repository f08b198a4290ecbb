"""Billing periods (pure): calendar-correct interval arithmetic as Stripe does it.

Months and years keep the anchor's day of month where it exists and clamp to the month's last day where it
does not (Jan 31 + 1 month → Feb 28, or 29 in a leap year; Feb 29 + 1 year → Feb 28). Period n runs from
anchor + n intervals to anchor + (n + 1) intervals, always counted from the anchor, so a clamped month does not
shift the ones after it (Jan 31 → Feb 28 → Mar 31).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

INTERVALS: Final = ("day", "week", "month", "year")
# Stripe's limit: a billing interval of at most three years (a provider with a shorter one refuses the rest itself:
# Authorize.net's ARB schedules at most 365 days or 12 months).
MAX_INTERVAL_COUNT: Final = {"day": 1095, "week": 156, "month": 36, "year": 3}


def add_months(moment: datetime, months: int) -> datetime:
    years, month_index = divmod(moment.month - 1 + months, 12)
    year = moment.year + years
    month = month_index + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def add_interval(anchor: datetime, interval: str, count: int) -> datetime:
    """`anchor` moved by `count` intervals (count may be any integer, 0 included)."""
    if interval == "day":
        return anchor + timedelta(days=count)
    if interval == "week":
        return anchor + timedelta(weeks=count)
    if interval == "month":
        return add_months(anchor, count)
    if interval == "year":
        return add_months(anchor, 12 * count)
    raise ValueError(f"unknown interval {interval!r}: one of {', '.join(INTERVALS)}")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def nth_period(anchor: datetime, interval: str, interval_count: int, n: int) -> Period:
    """The n-th billing period (0 = the first) of a subscription anchored at `anchor`."""
    return Period(
        add_interval(anchor, interval, interval_count * n),
        add_interval(anchor, interval, interval_count * (n + 1)),
    )


def first_period(now: datetime, interval: str, interval_count: int, trial_days: int | None) -> Period:
    """A trial is the first period; otherwise the first billed interval."""
    if trial_days:
        return Period(now, now + timedelta(days=trial_days))
    return nth_period(now, interval, interval_count, 0)


def valid_interval_count(interval: str, interval_count: int) -> bool:
    return interval in MAX_INTERVAL_COUNT and 1 <= interval_count <= MAX_INTERVAL_COUNT[interval]
