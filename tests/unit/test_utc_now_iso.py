"""utc_now_iso keeps the format every stored `issued_at`/`occurred_at` has: `2026-11-26T21:30:00.123456Z`."""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from payments_shared.messages import utc_now_iso

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def as_before(unix_ns: int) -> str:
    """What utc_now_iso returned before it was made faster, for the instant `unix_ns`."""
    instant = EPOCH + timedelta(microseconds=unix_ns // 1000)
    return instant.isoformat(timespec="microseconds").replace("+00:00", "Z")


def at(monkeypatch: pytest.MonkeyPatch, unix_ns: int) -> str:
    monkeypatch.setattr(time, "time_ns", lambda: unix_ns)
    return utc_now_iso()


def test_is_now_in_the_stored_format():
    before = datetime.now(UTC).replace(microsecond=0)
    text = utc_now_iso()
    after = datetime.now(UTC)
    assert FORMAT.fullmatch(text)
    assert before <= datetime.fromisoformat(text) <= after


def test_formats_random_instants_as_before(monkeypatch: pytest.MonkeyPatch):
    rng = random.Random(11)
    for _ in range(3000):
        unix_ns = rng.randrange(946_684_800, 4_102_444_800) * 10**9 + rng.randrange(10**9)
        assert at(monkeypatch, unix_ns) == as_before(unix_ns)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 26, 21, 30, 0, 0, tzinfo=UTC),  # microsecond == 0 still shows six digits
        datetime(2026, 11, 26, 21, 30, 0, 999_999, tzinfo=UTC),
        datetime(2028, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
    ],
)
def test_formats_edge_instants_as_before(monkeypatch: pytest.MonkeyPatch, moment: datetime):
    unix_ns = (moment - EPOCH) // timedelta(microseconds=1) * 1000 + 999  # nanoseconds are dropped, not rounded
    assert at(monkeypatch, unix_ns) == as_before(unix_ns)
    assert datetime.fromisoformat(at(monkeypatch, unix_ns)) == moment


def test_follows_the_clock_across_second_boundaries_both_ways(monkeypatch: pytest.MonkeyPatch):
    last_of_a_year = 1_798_761_599  # 2026-12-31T23:59:59Z
    sequence = [last_of_a_year, last_of_a_year + 1, last_of_a_year, last_of_a_year + 2, last_of_a_year - 3600]
    for second in sequence:
        for unix_ns in (second * 10**9, second * 10**9 + 999_999_999):
            assert at(monkeypatch, unix_ns) == as_before(unix_ns)
    assert at(monkeypatch, (last_of_a_year + 1) * 10**9) == "2027-01-01T00:00:00.000000Z"
