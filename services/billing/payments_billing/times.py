"""API timestamps (ISO 8601, UTC, microseconds, `Z`) from datetimes and from providers' unix seconds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from payments_shared.unix_time import unix_seconds_iso

PERIOD_FIELDS = ("current_period_start", "current_period_end")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


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
