"""`payments-ops replay` as a real command: on a copy of a store filled through the API it rebuilds exactly the
read model the running server keeps live; it is idempotent, works from a position, and is safe while the
server runs (lists keep answering and the live projection carries on from the rebuilt checkpoint)."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.blackbox.server import API, Api, Server, new_key
from tests.blackbox.test_customers import Billing
from tests.ops.conftest import run_ops

PROJECTIONS = ("transactions", "customers", "subscriptions")
WAIT_S = 15.0
Entries = list[tuple[str, str, int, str]]


def entries(data_dir: Path, projection: str) -> Entries:
    database = sqlite3.connect(f"file:{data_dir / 'readmodels.db'}?mode=ro", uri=True)
    try:
        sql = "SELECT id, workspace, version, body FROM entries WHERE projection = ? ORDER BY id"
        return [(str(i), str(w), int(v), str(b)) for i, w, v, b in database.execute(sql, (projection,)).fetchall()]
    finally:
        database.close()


def checkpoint(data_dir: Path, projection: str) -> int:
    database = sqlite3.connect(f"file:{data_dir / 'readmodels.db'}?mode=ro", uri=True)
    try:
        row = database.execute("SELECT position FROM checkpoints WHERE projection = ?", (projection,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        database.close()


def last_event_position(data_dir: Path) -> int:
    database = sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True)
    try:
        return int(database.execute("SELECT MAX(position) FROM events").fetchone()[0] or 0)
    finally:
        database.close()


def wait_caught_up(data_dir: Path) -> None:
    target = last_event_position(data_dir)
    deadline = time.monotonic() + WAIT_S
    while any(checkpoint(data_dir, name) < target for name in PROJECTIONS):
        assert time.monotonic() < deadline, "the live projections did not catch up"
        time.sleep(0.05)


def copy_store(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("events.db", "events.db-wal", "events.db-shm"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)
    return target


@pytest.fixture(scope="module")
def filled(server: Server) -> Server:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for _ in range(2):
            api = Api(http)
            billing = Billing(http, workspace=api.workspace)
            customer = billing.customer(payment_method="pm_card_visa")
            for amount in (1000, 2000, 3000):
                charge = api.charge(key=new_key(), amount=amount, customer_id=customer["id"])
                assert charge.status_code == 201, charge.text
            refund = api.post("refund", {"transaction_id": charge.json()["id"], "amount": 700}, key=new_key())
            assert refund.status_code == 200, refund.text
            assert api.authorize(key=new_key()).status_code == 201
            assert billing.subscribe(customer_id=customer["id"]).status_code == 201
            gone = billing.customer(email="gone@example.com")
            assert billing.call("DELETE", f"customers/{gone['id']}").status_code == 200
    wait_caught_up(server.data_dir)
    return server


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_replay_on_a_copy_equals_the_live_read_model(filled: Server, tmp_path: Path, projection: str) -> None:
    copy = copy_store(filled.data_dir, tmp_path / "copy")
    ran = run_ops(copy, "replay", projection)
    assert ran.status == 0, ran.stderr
    live = entries(filled.data_dir, projection)
    assert live and entries(copy, projection) == live
    assert checkpoint(copy, projection) == checkpoint(filled.data_dir, projection)
    assert f"replayed {projection}:" in ran.stdout and "entries written" in ran.stdout
    assert "\r" not in ran.stderr  # the progress bar is for terminals only

    again = run_ops(copy, "replay", projection)  # idempotent
    assert again.status == 0
    assert entries(copy, projection) == live
    middle = checkpoint(copy, projection) // 2
    from_middle = run_ops(copy, "replay", projection, "--from-position", str(middle))
    assert from_middle.status == 0
    assert entries(copy, projection) == live


def test_replay_from_a_position_past_the_checkpoint_leaves_nothing_out(filled: Server, tmp_path: Path) -> None:
    wait_caught_up(filled.data_dir)
    copy = copy_store(filled.data_dir, tmp_path / "copy")  # no read model yet: its checkpoint is 0
    ran = run_ops(copy, "replay", "transactions", "--from-position", str(last_event_position(copy)))
    assert ran.status == 0, ran.stderr
    assert entries(copy, "transactions") == entries(filled.data_dir, "transactions")
    assert checkpoint(copy, "transactions") == last_event_position(copy)


def test_replay_while_the_server_runs(filled: Server) -> None:
    before = entries(filled.data_dir, "transactions")
    ran = run_ops(filled.data_dir, "replay", "transactions")
    assert ran.status == 0, ran.stderr
    assert entries(filled.data_dir, "transactions") == before
    with httpx.Client(base_url=filled.base_url, timeout=30) as http:
        api = Api(http)
        made = api.charge(key=new_key())
        assert made.status_code == 201
        token = api.token
        deadline = time.monotonic() + WAIT_S
        while True:  # the live projection carries on after the swap
            page = http.get(f"{API}/transactions", headers={"Authorization": f"Bearer {token}"}).json()
            if [t["id"] for t in page["data"]] == [made.json()["id"]]:
                break
            assert time.monotonic() < deadline, page
            time.sleep(0.05)


def test_replay_refuses_an_unknown_projection(filled: Server) -> None:
    ran = run_ops(filled.data_dir, "replay", "invoices")
    assert ran.status == 2
    assert "invalid choice" in ran.stderr


def test_replay_when_the_read_model_is_ahead_of_the_store_rebuilds_it_from_the_store(
    filled: Server, tmp_path: Path
) -> None:
    """The event store restored from an older backup, the read model kept: its checkpoint is past the store's
    last event. Replay rebuilds it from what the store holds (it looped for ever, waiting to catch up)."""
    copy = copy_store(filled.data_dir, tmp_path / "copy")
    assert run_ops(copy, "replay", "transactions").status == 0
    rebuilt = entries(copy, "transactions")
    database = sqlite3.connect(copy / "readmodels.db")
    try:
        with database:
            database.execute("UPDATE checkpoints SET position = position + 1000 WHERE projection = 'transactions'")
    finally:
        database.close()

    ran = run_ops(copy, "replay", "transactions")

    assert ran.status == 0, ran.stderr
    assert checkpoint(copy, "transactions") == last_event_position(copy)
    assert entries(copy, "transactions") == rebuilt


def test_replay_of_a_damaged_read_model_is_one_line(filled: Server, tmp_path: Path) -> None:
    copy = copy_store(filled.data_dir, tmp_path / "copy")
    (copy / "readmodels.db").write_bytes(b"not a database, " * 4096)

    ran = run_ops(copy, "replay", "transactions")

    assert ran.status == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert ran.stderr.strip().splitlines() == [
        f"payments-ops replay: the read model {copy / 'readmodels.db'} is damaged (file is not a database): "
        "restart the service that keeps it (it moves the file aside and rebuilds it from the event store), or "
        "stop it and delete the file"
    ]
