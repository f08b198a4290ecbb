"""How much dearer the same small piece of work is right after the process slept: on some VMs an idle vCPU is
halted and comes back with cold caches, which makes a lightly loaded server spend more CPU per request than a
busy one (it explains much of the p99 at half peak). Printed by `make bench` next to its table."""

from __future__ import annotations

import json
import statistics
import time
from typing import Final

_SAMPLE: Final = {"amount": 1099, "currency": "usd", "metadata": {"order": "x" * 40}, "items": list(range(30))}
GAP_S: Final = 0.005  # about the gap between requests at a few hundred requests per second


def _unit() -> float:
    """Seconds for one small unit of the kind of work a request does (JSON in and out)."""
    started = time.perf_counter()
    for _ in range(3):
        json.loads(json.dumps(_SAMPLE))
    return time.perf_counter() - started


def penalty(units: int = 1500) -> tuple[float, float]:
    """(median µs of a unit run back to back, median µs of a unit run right after a GAP_S sleep)."""
    busy = [_unit() for _ in range(units)]
    after_sleep = []
    for _ in range(units // 5):
        time.sleep(GAP_S)
        after_sleep.append(_unit())
    return statistics.median(busy) * 1e6, statistics.median(after_sleep) * 1e6


def report_line() -> str:
    busy_us, after_sleep_us = penalty()
    return (
        f"Idle penalty of this machine: a small unit of JSON work takes {busy_us:.0f} µs back to back and "
        f"{after_sleep_us:.0f} µs right after a {GAP_S * 1e3:.0f} ms sleep ({after_sleep_us / busy_us:.1f}×)."
    )


if __name__ == "__main__":
    print(report_line())
