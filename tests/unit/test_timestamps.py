"""API timestamps from datetimes, and from providers' Unix timestamps: what a datetime cannot hold is None, never
an exception."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from payments_shared.timestamps import api_timestamp, unix_seconds_iso


def test_a_unix_second_is_an_api_timestamp() -> None:
    assert unix_seconds_iso(1_767_225_600) == "2026-01-01T00:00:00.000000Z"
    assert unix_seconds_iso(1_767_225_600.25) == "2026-01-01T00:00:00.250000Z"
    assert unix_seconds_iso(0) == "1970-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    "value", [10**20, -(10**20), 253_402_300_800, float("inf"), float("nan"), True, "1767225600", None, [1]]
)
def test_what_a_datetime_cannot_hold_is_none(value: object) -> None:
    assert unix_seconds_iso(value) is None


def test_a_moment_in_any_zone_is_written_in_utc_with_microseconds() -> None:
    moment = datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert api_timestamp(moment) == "2026-01-01T00:00:00.000000Z"
