"""Crash storm (services mode): charges with Idempotency-Keys from concurrent clients that retry on every error,
202, 409 and timeout, while the transactions worker is SIGKILLed and restarted about every second. Afterwards:
every key maps to exactly one transaction with exactly one outcome (final or requires_action), the sandbox ledger
holds exactly one charge per key and none without a key, the ledger and the event store agree on each outcome,
and the amounts captured in the event store add up to what the sandbox charged. Zero lost, zero doubled.

N is CRASH_STORM_N (default 500), times CHAOS_SCALE for `make chaos`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.blackbox.server import new_workspace
from tests.support.services import transactions_services
from tests.support.storm import STORM_ENV, Killer, plans, run_clients, verify

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]  # slow: `make chaos` runs it at CHAOS_SCALE

CHARGES = int(os.environ.get("CRASH_STORM_N", "500")) * int(os.environ.get("CHAOS_SCALE", "1"))
CLIENTS = 24
CLIENT_BUDGET_S = 60.0 + CHARGES * 0.5

MIN_KILLS = 5


@pytest.mark.timeout(int(CLIENT_BUDGET_S) + 120)
async def test_no_charge_is_lost_or_doubled_while_the_worker_is_killed_every_second(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    workspace = new_workspace()
    planned = plans(CHARGES)
    with transactions_services(tmp_path, isolated_rabbitmq_url, STORM_ENV) as services:
        with Killer(services, period_s=1.0):
            stats = await run_clients(services.base_url, workspace, planned, CLIENTS, CLIENT_BUDGET_S)
        assert len(stats.final) == CHARGES, f"{CHARGES - len(stats.final)} keys never got a final answer"
        kills = services.kills
    verdict = verify(tmp_path, workspace, planned, stats)
    print(f"crash storm: {CHARGES} charges, {kills} kills, {stats.requests} requests, {dict(stats.answers)}")
    assert kills >= MIN_KILLS, f"the storm killed the worker only {kills} times"
    assert verdict.lost == []
    assert verdict.doubled == []
    assert verdict.mismatched == []
    assert verdict.amount_in_store == verdict.amount_in_ledger
    assert sum(verdict.statuses.values()) == CHARGES
