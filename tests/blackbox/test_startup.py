"""Start-up when something a process needs is missing: a wrong setting is one line and exit status 2 (see
tests/unit/test_settings.py); an unreachable RabbitMQ or an unusable data directory is one JSON log line saying so
and exit status 1, never a traceback, and never the broker password. Every service's real entry point."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import pytest

from tests.blackbox.server import API, Api, base_env, embedded_server, free_port, free_ports

ENTRY_POINTS = [
    "payments_embedded",
    "payments_gateway",
    "payments_webhook_ingest",
    "payments_transactions",
    "payments_billing",
]
PASSWORD = "start-up-secret-pw"


def start(module: str, env: dict[str, str]) -> tuple[int, str]:
    finished = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return finished.returncode, finished.stdout + finished.stderr


def cannot_start_reason(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    refusals = [line for line in lines if line["message"] == "cannot start"]
    assert len(refusals) == 1, output
    assert refusals[0]["level"] == "error"
    return str(refusals[0]["reason"])


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_an_unreachable_rabbitmq_is_one_line_and_status_1(module: str, tmp_path: Path) -> None:
    broker_port, port = free_ports(2)  # two different ports: the service must not find its broker on its own port
    closed = f"amqp://guest:{PASSWORD}@127.0.0.1:{broker_port}/"
    status, output = start(module, base_env(tmp_path, BROKER_URL=closed, PORT=str(port)))
    assert status == 1, output
    assert "RabbitMQ" in cannot_start_reason(output)
    assert PASSWORD not in output


@pytest.mark.parametrize("module", ENTRY_POINTS[1:])
def test_a_virtual_host_rabbitmq_will_not_open_is_one_line_naming_it_and_status_1(
    module: str, tmp_path: Path, rabbitmq_url: str
) -> None:
    missing = urlunparse(urlparse(rabbitmq_url)._replace(path="/no-such-vhost"))
    status, output = start(module, base_env(tmp_path, BROKER_URL=missing, PORT=str(free_port())))
    assert status == 1, output  # was a 77-line traceback
    assert "virtual host 'no-such-vhost'" in cannot_start_reason(output)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_a_data_directory_that_cannot_be_made_is_one_line_and_status_1(
    module: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    broker_url = "memory://" if module == "payments_embedded" else request.getfixturevalue("isolated_rabbitmq_url")
    env = base_env(a_file / "data", BROKER_URL=broker_url, PORT=str(free_port()))
    env.pop("EVENTSTORE_URI", None)
    status, output = start(module, env)
    assert status == 1, output
    assert "Not a directory" in cannot_start_reason(output)


@pytest.mark.parametrize("module", ENTRY_POINTS[1:])
def test_a_service_without_broker_url_is_one_line_naming_it_and_status_2(module: str, tmp_path: Path) -> None:
    """API.md: a missing required variable in services mode is a start-up error naming it. Without BROKER_URL a
    service took `memory://`, a queue of its own that no other process reads: a gateway so started answered a
    charge 202 `pending`, and the charge was never carried out."""
    env = base_env(tmp_path, PORT=str(free_port()))  # base_env leaves BROKER_URL out
    status, output = start(module, env)
    assert status == 2, output
    assert output.strip().splitlines() == [
        "configuration error: BROKER_URL is required in services mode, e.g. amqp://user:pass@host:5672/vhost"
    ]


@pytest.mark.parametrize("module", ENTRY_POINTS[1:])
def test_a_service_given_the_in_process_broker_is_refused_naming_it(module: str, tmp_path: Path) -> None:
    """Set explicitly, `memory://` was taken: a gateway so started answered charges 202 `pending` that no worker
    ever saw."""
    status, output = start(module, base_env(tmp_path, BROKER_URL="memory://", PORT=str(free_port())))
    assert status == 2, output
    assert output.strip().splitlines()[-1].startswith("configuration error: BROKER_URL=memory:// is a queue")


def test_embedded_mode_needs_no_broker_url(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    status, output = start("payments_embedded", base_env(a_file / "data", PORT=str(free_port())))
    assert status == 1, output  # past the settings: stopped by its data directory
    assert "Not a directory" in cannot_start_reason(output)


@pytest.mark.parametrize("damage", ["not_sqlite", "damaged_page"])
def test_a_damaged_read_model_is_moved_aside_and_rebuilt_from_the_store(tmp_path: Path, damage: str) -> None:
    """`readmodels.db` is a cache of the event store: found damaged at start-up (not SQLite: that was a traceback
    and exit 1; a damaged page: every list 503 for ever), it is moved aside and rebuilt, and the lists hold
    what the store holds."""
    with embedded_server(tmp_path) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        api = Api(http)
        charged = [api.charge(key=f"damaged-{n}").json()["id"] for n in range(40)]
        token = api.token
    read_model = tmp_path / "readmodels.db"
    database = sqlite3.connect(read_model)
    try:  # everything into the file itself, the write-ahead log emptied
        database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        database.close()
    if damage == "not_sqlite":
        read_model.write_bytes(b"not a database, " * 4096)
    else:
        with read_model.open("r+b") as file:  # the pages past the first: the schema's and the entries'
            file.seek(4096)
            file.write(b"\xff" * 8192)
    with embedded_server(tmp_path) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        deadline = time.monotonic() + 15
        while True:
            page = http.get(f"{API}/transactions?limit=100", headers={"Authorization": f"Bearer {token}"})
            if page.status_code == 200 and sorted(t["id"] for t in page.json()["data"]) == sorted(charged):
                break
            assert time.monotonic() < deadline, page.text
            time.sleep(0.1)
    assert list(tmp_path.glob("readmodels.db.damaged-*")), "the damaged file is kept aside for a look"
