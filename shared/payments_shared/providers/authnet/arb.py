"""Recurring billing (ARB) rules, pure: intervals, start dates, what a subscription answer says.

ARB schedules in days (7–365) or months (1–12), charges a customer payment profile on each occurrence from
`startDate` on (a trial is a later start: the first charge is after `trial_days`), and refuses a second identical
subscription with E00012 naming the first: the adapter's exactly-once rests on that. Identical includes the
startDate, so it is the day the command was accepted, the same on every attempt. ARB refuses a startDate before the
day it is submitted (E00017): an attempt on a later day looks its subscription up in the list of subscriptions
(by the name or invoice number it was given) instead.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from payments_shared.providers.authnet.parse import ApiResponse, SubscriptionSummary

DUPLICATE_SUBSCRIPTION = "E00012"  # "You have submitted a duplicate of Subscription 12345. …"
START_DATE_PASSED = "E00017"  # "Start Date must not occur before the submission date."
ALREADY_CANCELED = "I00002"  # "The subscription has already been canceled."
# Where the adapter looks for a subscription an earlier attempt made: ARB lists active and inactive ones apart.
SEARCHES = ("subscriptionActive", "subscriptionInactive")
# Clocks differ: a subscription listed as created this long before its command was accepted still counts.
_CLOCK_SKEW = timedelta(hours=1)
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


def accepted_day(accepted_at: datetime | None) -> date | None:
    """The UTC day a command was accepted on: its subscription's start, whenever an attempt is made."""
    if accepted_at is None:
        return None
    aware = accepted_at if accepted_at.tzinfo else accepted_at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).date()


def start_date_passed(response: ApiResponse) -> bool:
    return response.first_code == START_DATE_PASSED


def subscription_name(reference: str) -> str:
    return f"subscription {reference}"


def is_ours(listed: SubscriptionSummary, reference: str) -> bool:
    """Whether a listed subscription is the one a command with this reference created."""
    return listed.name == subscription_name(reference) or listed.invoice == reference


def older_than(listed: SubscriptionSummary, accepted_at: datetime | None) -> bool:
    """Whether a listed subscription was created before the command was accepted (so are all after it, newest first)."""
    if accepted_at is None or listed.created is None:
        return False
    aware = accepted_at if accepted_at.tzinfo else accepted_at.replace(tzinfo=UTC)
    return listed.created < aware - _CLOCK_SKEW


def listed_status(listed: SubscriptionSummary, trial_days: int | None) -> str:
    """API.md's status of a subscription found in the list (as its webhooks would move it)."""
    if listed.status == "active":
        return "trialing" if trial_days else "active"
    return "past_due" if listed.status == "suspended" else "canceled"


def duplicate_of(response: ApiResponse) -> str | None:
    """The subscription id an E00012 answer names."""
    if response.first_code != DUPLICATE_SUBSCRIPTION or not response.messages:
        return None
    found = _SUBSCRIPTION_ID.search(response.messages[0].text)
    return found.group(1) if found else None


def bills_its_profile(response: ApiResponse) -> bool:
    """Whether the subscription of an ARBGetSubscriptionResponse still bills its profile (active or suspended:
    the statuses that make Authorize.net refuse the profile's deletion, E00106)."""
    return response.child_text("subscription/a:status") in ("active", "suspended")


def current_pricing(response: ApiResponse) -> tuple[Decimal, int] | None:
    """(amount per occurrence, quantity) from an ARBGetSubscriptionResponse."""
    amount = response.child_text("subscription/a:amount")
    if amount is None:
        return None
    note = _QUANTITY.search(response.child_text("subscription/a:order/a:description") or "")
    return Decimal(amount), int(note.group(1)) if note else 1
