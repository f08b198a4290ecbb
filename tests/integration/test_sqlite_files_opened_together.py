"""Processes that open one new SQLite file at the same moment, as the workers of a fresh DATA_DIR do when they
start side by side: each gets its file set up. One of them failed with "database is locked" (SQLite refuses,
without waiting, the switch to WAL that could deadlock); CI saw a worker exit so (services-mode webhook test),
and four processes at once failed in about 1 round of 3."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.projections.readmodel import ReadModel
from payments_shared.providers.sandbox import SandboxLedger

PROCESSES = 4
ROUNDS = 15


def _sandbox_ledger(path: Path) -> object:
    return SandboxLedger(path)


def _event_store(path: Path) -> object:
    return SqliteEventStore(path)


def _read_model(path: Path) -> object:
    return ReadModel(path)


Opener = Callable[[Path], object]


def _open_at(opener: Opener, path: Path, start_at: float, failures: multiprocessing.Queue[str]) -> None:
    while time.time() < start_at:  # all at once: the window is a few milliseconds wide
        pass
    try:
        opener(path)
    except Exception as error:
        failures.put(repr(error))


@pytest.mark.parametrize("opener", [_sandbox_ledger, _event_store, _read_model])
def test_processes_opening_a_new_file_together_all_get_it(opener: Opener, tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failures: multiprocessing.Queue[str] = context.Queue()
    for round_number in range(ROUNDS):
        path = tmp_path / f"round-{round_number}" / "file.db"
        path.parent.mkdir()
        start_at = time.time() + 0.2
        processes = [
            context.Process(target=_open_at, args=(opener, path, start_at, failures)) for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []
