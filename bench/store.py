"""Durable appends through the SQLite event store, next to two baselines on the same file settings.

Run: `python -m bench.store` (or `make bench-store`). Every figure is a durable 2-event append (WAL,
synchronous=FULL) on a fresh file in a temporary directory:
- bare loop: one thread, INSERT + COMMIT as fast as it goes (an append's two event rows; and one tiny row);
- naive path: N asyncio appenders, one commit per append, serialised behind a lock through asyncio.to_thread;
- adapter: N asyncio appenders through SqliteEventStore (the appends of each event-loop turn in one group commit).
Targets (64 appenders): ≥ 3× the naive path, ≥ 1.5× the bare loop, p99 ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from payments_shared.eventstore.port import NewEvent
from payments_shared.eventstore.sqlite import INSERT, SCHEMA, SqliteEventStore, connect

DATA = {"amount": 1250, "currency": "usd", "customer": "cus_123", "description": "bench"}
METADATA = {"$correlationId": "c", "$causationId": "c", "actor": "bench", "workspace": "ws_bench"}


@dataclass
class Result:
    name: str
    appends: int
    seconds: float
    latencies_s: list[float]

    @property
    def rate(self) -> float:
        return self.appends / self.seconds

    @property
    def p99_ms(self) -> float | None:
        if len(self.latencies_s) < 100:
            return None
        return statistics.quantiles(self.latencies_s, n=100)[98] * 1000


def fresh_file(directory: Path, name: str) -> Path:
    path = directory / f"{name}.db"
    connection = connect(path, busy_timeout_ms=5000)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(SCHEMA)
    connection.close()
    return path


def event_rows(stream: str, version: int) -> list[tuple[str, str, int, str, str, str, str]]:
    now = datetime.now(UTC).isoformat()
    data, metadata = json.dumps(DATA), json.dumps(METADATA)
    return [(str(uuid.uuid4()), stream, version + n, "BenchEvent", data, metadata, now) for n in range(2)]


def bare_loop(path: Path, seconds: float) -> Result:
    """Each commit inserts one append's two event rows into the events table."""
    connection = connect(path, busy_timeout_ms=5000)
    commits, version = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        connection.execute("BEGIN")
        connection.executemany(INSERT, event_rows("bare", version))
        connection.execute("COMMIT")
        commits, version = commits + 1, version + 2
    elapsed = time.perf_counter() - started
    connection.close()
    return Result("bare loop, 2 event rows per commit", commits, elapsed, [])


def bare_minimal_loop(path: Path, seconds: float) -> Result:
    """The fsync ceiling: one tiny row per commit in a table without indexes."""
    connection = connect(path, busy_timeout_ms=5000)
    connection.execute("CREATE TABLE IF NOT EXISTS ticks (n INTEGER)")
    commits = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        connection.execute("BEGIN")
        connection.execute("INSERT INTO ticks VALUES (?)", (commits,))
        connection.execute("COMMIT")
        commits += 1
    elapsed = time.perf_counter() - started
    connection.close()
    return Result("bare loop, 1 tiny row per commit", commits, elapsed, [])


async def run_appenders(
    name: str, appenders: int, seconds: float, append: Callable[[str, int], Awaitable[None]]
) -> Result:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def appender(index: int) -> int:
        stream, version, done = f"bench-{index}-{uuid.uuid4().hex[:8]}", -1, 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await append(stream, version)
            latencies.append(time.perf_counter() - started)
            version, done = version + 2, done + 1
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(appender(index) for index in range(appenders)))
    return Result(name, sum(counts), time.perf_counter() - started, latencies)


async def naive(path: Path, appenders: int, seconds: float) -> Result:
    connection = connect(path, busy_timeout_ms=5000)
    lock = asyncio.Lock()

    def append_now(stream: str, version: int) -> None:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("SELECT MAX(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        connection.executemany(INSERT, event_rows(stream, version + 1))
        connection.execute("COMMIT")

    async def append(stream: str, version: int) -> None:
        async with lock:
            await asyncio.to_thread(append_now, stream, version)

    result = await run_appenders(f"naive path, {appenders} appenders", appenders, seconds, append)
    connection.close()
    return result


async def adapter(path: Path, appenders: int, seconds: float) -> Result:
    store = SqliteEventStore(path)

    async def append(stream: str, version: int) -> None:
        events = [NewEvent("BenchEvent", DATA, METADATA), NewEvent("BenchEvent", DATA, METADATA)]
        await store.append(stream, events, version)

    try:
        return await run_appenders(f"SqliteEventStore, {appenders} appenders", appenders, seconds, append)
    finally:
        await store.close()


def show(result: Result) -> None:
    p99 = f"{result.p99_ms:7.1f} ms" if result.p99_ms is not None else "        -"
    print(f"  {result.name:<40} {result.rate:>9,.0f} appends/s   p99 {p99}", flush=True)


def bare_runs(folder: Path, seconds: float, round_: int) -> list[Result]:
    results = [
        bare_loop(fresh_file(folder, f"bare{round_}"), seconds),
        bare_minimal_loop(fresh_file(folder, f"tiny{round_}"), seconds),
    ]
    for result in results:
        show(result)
    return results


async def main(seconds: float) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as directory:
        folder = Path(directory)
        print(f"durable 2-event appends (WAL, synchronous=FULL), {seconds:g} s per run, files in {folder}")
        baselines = bare_runs(folder, seconds, 1)
        naive_runs = {n: await naive(fresh_file(folder, f"naive{n}"), n, seconds) for n in (32, 64)}
        for result in naive_runs.values():
            show(result)
        adapter_runs = {n: await adapter(fresh_file(folder, f"adapter{n}"), n, seconds) for n in (1, 32, 64)}
        for result in adapter_runs.values():
            show(result)
        print("bare loops again (the machine is shared: the faster figure of all bare runs is the baseline)")
        baselines += bare_runs(folder, seconds, 2)

    bare = max(baselines, key=lambda result: result.rate)
    best = adapter_runs[64]
    vs_naive, vs_bare = best.rate / naive_runs[64].rate, best.rate / bare.rate
    p99 = best.p99_ms or 0.0
    print("ratios (64 appenders through the adapter):")
    print(
        f"  vs naive path at 64: {vs_naive:5.2f}x  (target >= 3x)   vs naive at 32: "
        f"{adapter_runs[32].rate / naive_runs[32].rate:5.2f}x"
    )
    print(f"  vs bare loop:        {vs_bare:5.2f}x  (target >= 1.5x; vs the fastest bare run, {bare.rate:,.0f}/s)")
    print(f"  p99 latency:         {p99:5.1f} ms (target <= 20 ms)")
    met = vs_naive >= 3 and vs_bare >= 1.5 and p99 <= 20
    print("targets met" if met else "targets NOT met (note: other work on this machine skews these figures)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run (default 3)")
    raise SystemExit(asyncio.run(main(parser.parse_args().seconds)))
