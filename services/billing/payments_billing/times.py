"""Billing's timestamps: parsing the API's, and the period bounds a provider reports (Unix seconds)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from payments_shared.timestamps import unix_seconds_iso

PERIOD_FIELDS = ("current_period_start", "current_period_end")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def reported_periods(details: Mapping[str, Any]) -> dict[str, str]:
    """Period bounds a provider reported (unix seconds) as API timestamps."""
    periods: dict[str, str] = {}
    for name in PERIOD_FIELDS:
        moment = unix_seconds_iso(details.get(name))
        if moment is not None:
            periods[name] = moment
    return periods
