"""Recurring billing (ARB) rules, pure: intervals, start dates, what a subscription answer says.

ARB schedules in days (7–365) or months (1–12), charges a customer payment profile on each occurrence from
`startDate` on (a trial is a later start: the first charge is after `trial_days`), and refuses a second identical
subscription with E00012 naming the first: the adapter's exactly-once rests on that.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from payments_shared.providers.authnet.parse import ApiResponse

DUPLICATE_SUBSCRIPTION = "E00012"  # "You have submitted a duplicate of Subscription 12345. …"
ALREADY_CANCELED = "I00002"  # "The subscription has already been canceled."
_SUBSCRIPTION_ID = re.compile(r"Subscription (\d+)")
_QUANTITY = re.compile(r"quantity=(\d+)")


_UNITS = {"day": (1, "days"), "week": (7, "days"), "month": (1, "months"), "year": (12, "months")}
_LIMITS = {"days": (7, 365), "months": (1, 12)}


def interval(unit: str, count: int) -> tuple[int, str] | None:
    """ARB's (length, unit) for an API.md interval, or None when ARB cannot schedule it."""
    if unit not in _UNITS:
        return None
    factor, arb_unit = _UNITS[unit]
    length = factor * count
    low, high = _LIMITS[arb_unit]
    return (length, arb_unit) if low <= length <= high else None


def start_date(trial_days: int | None, today: date | None = None) -> date:
    return (today or datetime.now(UTC).date()) + timedelta(days=trial_days or 0)


def duplicate_of(response: ApiResponse) -> str | None:
    """The subscription id an E00012 answer names."""
    if response.first_code != DUPLICATE_SUBSCRIPTION or not response.messages:
        return None
    found = _SUBSCRIPTION_ID.search(response.messages[0].text)
    return found.group(1) if found else None


def current_pricing(response: ApiResponse) -> tuple[Decimal, int] | None:
    """(amount per occurrence, quantity) from an ARBGetSubscriptionResponse."""
    amount = response.child_text("subscription/a:amount")
    if amount is None:
        return None
    note = _QUANTITY.search(response.child_text("subscription/a:order/a:description") or "")
    return Decimal(amount), int(note.group(1)) if note else 1
