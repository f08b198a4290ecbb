"""API timestamps (ISO 8601, UTC, microseconds, `Z`): from datetimes, and from providers' Unix seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """`moment` with its offset; a naive one (a store's timestamp read back without it) is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def api_timestamp(moment: datetime) -> str:
    """`2026-11-26T21:30:00.123456Z`. A moment whose offset moves it out of the calendar raises OverflowError."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def unix_seconds_iso(value: object) -> str | None:
    """None for anything that is not a moment a datetime can hold: a bool, a string, NaN, 1e20. The value comes
    from a provider's payload, so a bad one is a field to leave out, never an exception that stops its event."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        moment = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return api_timestamp(moment)
