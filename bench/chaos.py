"""The crash storm at a larger scale: a benchmark, not a test. Services mode (gateway + transactions worker
processes, a fresh RabbitMQ virtual host, one SQLite event store, the sandbox provider with a latency), charges
with Idempotency-Keys from concurrent clients that retry on every error, 202, 409 and timeout, while the worker is
SIGKILLed and restarted about every second. Prints lost / duplicated / mismatched counts, the amounts in the event
store and in the sandbox ledger, and the throughput (keys brought to a final answer per second of storm).

Run: `python -m bench.chaos [--charges 2000] [--clients 32] [--kill-period 1.0]` (needs the local RabbitMQ and
rabbitmqctl). CHAOS_SCALE multiplies the default number of charges.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from tests.blackbox.server import new_workspace
from tests.support.rabbitmq import fresh_vhost
from tests.support.services import transactions_services
from tests.support.storm import STORM_ENV, Killer, plans, run_clients, verify

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def main() -> None:
    scale = int(os.environ.get("CHAOS_SCALE", "1"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charges", type=int, default=2000 * scale)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--kill-period", type=float, default=1.0, help="seconds a worker lives once ready")
    parser.add_argument("--latency-ms", type=int, default=int(STORM_ENV["SANDBOX_LATENCY_MS"]))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    arguments = parser.parse_args()

    env = {**STORM_ENV, "SANDBOX_LATENCY_MS": str(arguments.latency_ms), "LOG_LEVEL": "WARNING"}
    workspace = new_workspace()
    planned = plans(arguments.charges, seed=int(time.time()))
    with (
        tempfile.TemporaryDirectory(prefix="chaos-") as directory,
        fresh_vhost(RABBITMQ_URL, prefix="chaos") as broker_url,
    ):
        data_dir = Path(directory)
        with transactions_services(data_dir, broker_url, env) as services:
            started = time.monotonic()
            with Killer(services, period_s=arguments.kill_period):
                budget = 120.0 + arguments.charges
                stats = asyncio.run(run_clients(services.base_url, workspace, planned, arguments.clients, budget))
            elapsed = time.monotonic() - started
        verdict = verify(data_dir, workspace, planned, stats)
    figures = {
        "charges": arguments.charges,
        "answered": len(stats.final),
        "lost": len(verdict.lost),
        "duplicated": len(verdict.doubled),
        "mismatched": len(verdict.mismatched),
        "amount_in_event_store": verdict.amount_in_store,
        "amount_in_sandbox_ledger": verdict.amount_in_ledger,
        "statuses": dict(verdict.statuses),
        "worker_kills": services.kills,
        "requests": stats.requests,
        "answers": dict(stats.answers),
        "seconds": round(elapsed, 1),
        "charges_per_second": round(len(stats.final) / elapsed, 1),
    }
    if arguments.json:
        print(json.dumps(figures))
        return
    for name, value in figures.items():
        print(f"{name:>26}: {value}")
    print(f"{'verdict':>26}: {'CLEAN: zero lost, zero doubled' if verdict.clean else 'NOT CLEAN'}")


if __name__ == "__main__":
    main()
