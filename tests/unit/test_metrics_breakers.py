"""The breaker-state gauge: one observation per provider and worker (embedded mode runs the transactions and the
billing worker in one process, each with its own breaker for the same provider)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from payments_shared import metrics


@pytest.fixture
def no_other_sources() -> Iterator[None]:
    kept = list(metrics._breaker_sources)
    metrics._breaker_sources.clear()
    yield
    metrics._breaker_sources[:] = kept


def test_each_workers_breakers_are_observed_apart(no_other_sources: None) -> None:
    metrics.observe_breakers("transactions", lambda: {"stripe": {"state": "open", "fail_counter": 5}})
    metrics.observe_breakers("billing", lambda: {"stripe": {"state": "closed", "fail_counter": 0}})

    observed = {
        (point.attributes["payments.worker"], point.attributes["payments.provider"]): point.value
        for point in metrics._observe_breakers(None)  # type: ignore[arg-type]
        if point.attributes is not None
    }

    assert observed == {("transactions", "stripe"): 2, ("billing", "stripe"): 0}
