"""How the SQLite event store's appends slow down as it fills, with random (UUIDv4) against time-ordered (UUIDv7,
the default since 2026-11-27) event ids, in one run.

Run: `python -m bench.store_growth [--appends 300000] [--step 30000]` (part of `make bench-store`). Two fresh
stores in a temporary directory are filled in alternating steps by 64 asyncio appenders, each append two events
(a charge's request and outcome, with their usual sizes) on a new stream; every step prints appends/s and CPU µs
per append for both, and their ratio. Every new event id lands somewhere in the id index: a random one anywhere, so
once the index outgrows SQLite's page cache nearly every event dirties its own page; a time-ordered one next to
the last.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from payments_shared import ids
from payments_shared.eventstore.port import NO_STREAM, NewEvent
from payments_shared.eventstore.sqlite import SqliteEventStore

APPENDERS = 64
REQUEST = {
    "transaction_id": "txn_bench",
    "kind": "charge",
    "amount": 1099,
    "currency": "usd",
    "provider": "sandbox",
    "payment_method": {"type": "token", "token": "pm_card_visa"},
    "customer_id": None,
    "description": None,
    "metadata": {},
    "command_id": "5614e5df-b37a-5d2b-8366-d4a9a2c3601a",
    "message_id": "0cdfb4ce-7b3c-4f76-b7c7-01a4d013f7d0",
    "fingerprint": "e6b45876d1ec95b3a038cab711ed6c964f3aee85475072b31014f39b1e6a3d3b",
}
METADATA = {
    "actor": "bench",
    "workspace": "ws_bench",
    "command_id": "5614e5df-b37a-5d2b-8366-d4a9a2c3601a",
    "occurred_at": "2026-11-27T03:34:57.601120Z",
    "traceparent": "00-827263a6ec739e260dedcb6e3f5af74d-d59b688bb006738a-01",
    "correlation_id": "e3367672-4ed1-4fef-af0e-ffbfaadf320b",
    "causation_id": "0cdfb4ce-7b3c-4f76-b7c7-01a4d013f7d0",
}
ID_KINDS: dict[str, Callable[[], uuid.UUID]] = {"random (v4)": uuid.uuid4, "time-ordered (v7)": ids.time_ordered_uuid}


async def fill(store: SqliteEventStore, appends: int, new_id: Callable[[], uuid.UUID]) -> tuple[float, float]:
    """`appends` charges' worth of events; (appends per second, CPU µs per append)."""

    async def appender(count: int) -> None:
        for _ in range(count):
            stream = f"transaction-txn_{ids.letters(secrets.token_bytes(12))}"
            events = [NewEvent("TransactionRequested", REQUEST, METADATA, new_id()) for _ in range(2)]
            await store.append(stream, events, NO_STREAM)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(appender(appends // APPENDERS) for _ in range(APPENDERS)))
    done = appends // APPENDERS * APPENDERS
    return done / (time.perf_counter() - started), 1e6 * (time.process_time() - cpu_started) / done


async def main(appends: int, step: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-store-growth-"))
    stores = {kind: SqliteEventStore(folder / f"{index}.db") for index, kind in enumerate(ID_KINDS)}
    print(f"| appends so far | {' | '.join(f'{kind} appends/s (CPU µs each)' for kind in ID_KINDS)} | ratio |")
    print(f"|---:|{'---:|' * len(ID_KINDS)}---:|")
    try:
        for filled in range(step, appends + 1, step):
            rates = []
            cells = []
            for kind, store in stores.items():
                rate, cpu_us = await fill(store, step, ID_KINDS[kind])
                rates.append(rate)
                cells.append(f"{rate:,.0f} ({cpu_us:.0f})")
            print(f"| {filled:,} | {' | '.join(cells)} | {rates[1] / rates[0]:.2f}× |", flush=True)
    finally:
        for store in stores.values():
            await store.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=300_000, help="charges' worth of appends per store")
    parser.add_argument("--step", type=int, default=30_000, help="appends per measured step")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.appends, arguments.step))
