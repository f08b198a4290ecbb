"""`payments-ops export` as a real command: filters, JSON lines in store order, and 100 000 events exported in
flat memory (the child's peak RSS, sampled from /proc, stays under a fixed bound and near a 1 000-event export's)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from payments_shared.eventstore.port import NO_STREAM, NewEvent
from payments_shared.eventstore.sqlite import SqliteEventStore

from tests.ops.conftest import PAYMENTS_OPS, ops_env, run_ops

RSS_BOUND_KB = 100 * 1024  # a fixed ceiling (the interpreter and imports take about 47 MiB)
GROWTH_BOUND_KB = 16 * 1024  # 100x the events may not cost more than this over the small export


async def _fill(path: Path, streams: int, events_per_stream: int) -> None:
    store = SqliteEventStore(path)
    try:
        for number in range(streams):
            workspace = "ws_even" if number % 2 == 0 else "ws_odd"
            events = [
                NewEvent(
                    "PaymentCaptured" if version % 2 else "TransactionRequested",
                    {"n": number, "version": version, "note": "x" * 120},
                    {"workspace": workspace, "actor": "filler", "occurred_at": f"2026-01-{1 + number % 28:02d}T00:00Z"},
                )
                for version in range(events_per_stream)
            ]
            await store.append(f"transaction-txn_{number:06d}", events, NO_STREAM)
    finally:
        await store.close()


def _high_water_kb(pid: int) -> int:
    """VmHWM of a live process: its peak RSS since its exec (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _export_peak_rss_kb(data_dir: Path, out: Path) -> tuple[int, int]:
    """(lines written, the export's peak RSS in KiB). Sampled from /proc while it runs: the child's own
    ru_maxrss would also count the forking pytest process's pages, which it carries across exec."""
    peak = 0
    with out.open("wb") as sink:
        command = [PAYMENTS_OPS, "export"]
        child = subprocess.Popen(command, env=ops_env(data_dir), stdout=sink, stderr=subprocess.DEVNULL)
        while child.poll() is None:
            peak = max(peak, _high_water_kb(child.pid))
            time.sleep(0.005)
    assert child.returncode == 0
    with out.open("rb") as written:
        lines = sum(1 for _ in written)
    return lines, peak


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("export-big")
    asyncio.run(_fill(data_dir / "events.db", 1000, 100))
    return data_dir


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("export-small")
    asyncio.run(_fill(data_dir / "events.db", 10, 100))
    return data_dir


def test_export_of_100k_events_stays_in_flat_memory(big_store: Path, small_store: Path, tmp_path: Path) -> None:
    small_lines, small_rss = _export_peak_rss_kb(small_store, tmp_path / "small.jsonl")
    big_lines, big_rss = _export_peak_rss_kb(big_store, tmp_path / "big.jsonl")
    assert (small_lines, big_lines) == (1_000, 100_000)
    print(f"export peak RSS: 1 000 events {small_rss} KiB, 100 000 events {big_rss} KiB")
    assert big_rss < RSS_BOUND_KB
    assert big_rss - small_rss < GROWTH_BOUND_KB


def test_export_lines_are_events_in_store_order(small_store: Path) -> None:
    ran = run_ops(small_store, "export")
    assert ran.status == 0
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    positions = [line["position"] for line in lines]
    assert positions == sorted(positions) and len(positions) == 1000
    first = lines[0]
    assert first["stream"] == "transaction-txn_000000"
    assert first["type"] == "TransactionRequested"
    assert first["metadata"]["workspace"] == "ws_even"
    assert "exported 1000 events" in ran.stderr
    assert "\r" not in ran.stderr  # no progress bar when stderr is not a terminal


def test_export_filters_by_time_workspace_and_type(small_store: Path) -> None:
    ran = run_ops(
        small_store,
        "export",
        "--since",
        "2026-01-02",
        "--until",
        "2026-01-05T00:00:00Z",
        "--workspace",
        "ws_odd",
        "--type",
        "PaymentCaptured",
    )
    assert ran.status == 0, ran.stderr
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    # streams 1 and 3 are odd and dated Jan 2 and Jan 4; half of each stream's 100 events are captures
    assert {line["stream"] for line in lines} == {"transaction-txn_000001", "transaction-txn_000003"}
    assert len(lines) == 100
    assert {line["type"] for line in lines} == {"PaymentCaptured"}


def test_export_refuses_a_bad_time(small_store: Path) -> None:
    ran = run_ops(small_store, "export", "--since", "yesterday")
    assert ran.status == 2
    assert "ISO 8601" in ran.stderr


def test_export_into_a_reader_that_stops_early_ends_quietly(small_store: Path) -> None:
    """`payments-ops export | head`: the reader closing the pipe ends the export, with no error line."""
    export = subprocess.Popen(
        [PAYMENTS_OPS, "export"],
        env=ops_env(small_store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert export.stdout is not None and export.stderr is not None
    first_line = export.stdout.readline()
    export.stdout.close()  # what `head -1` does once it has its line
    status = export.wait(timeout=60)
    stderr = export.stderr.read()

    assert json.loads(first_line)["position"] >= 0
    assert "Broken pipe" not in stderr and "Traceback" not in stderr, stderr
    assert status == 141  # as a shell command whose reader went away
