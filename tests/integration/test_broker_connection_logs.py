"""What a worker logs when RabbitMQ closes its connection and it reconnects by itself: one warning for the close
and one line when it is restored, not ERRORs and tracebacks from aio-pika's channels (a probe counted them in
every process on each blip)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.blackbox.server import base_env, free_port, start_process, wait_ready

pytestmark = pytest.mark.rabbitmq


def close_connections_of(vhost: str) -> int:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "vhost", "pid"], capture_output=True, text=True, check=True
    ).stdout
    pids = [line.split()[1] for line in listed.splitlines() if line.split()[:1] == [vhost]]
    for pid in pids:
        subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "closed by a test"], check=True, timeout=60)
    return len(pids)


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_a_dropped_broker_connection_is_a_warning_then_restored_without_errors(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    port = free_port()
    env = base_env(tmp_path, PORT=str(port), BROKER_URL=isolated_rabbitmq_url)
    worker = start_process("transactions", ["-m", "payments_transactions"], env, tmp_path / "logs")
    try:
        wait_ready(f"http://127.0.0.1:{port}", [worker])
        assert close_connections_of(urlparse(isolated_rabbitmq_url).path.lstrip("/")) >= 1
        deadline = time.monotonic() + 30
        while not any(line["message"] == "broker connection restored" for line in log_lines(worker.log_path)):
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        wait_ready(f"http://127.0.0.1:{port}", [worker])
    finally:
        worker.stop()
    lines = log_lines(worker.log_path)
    assert [line for line in lines if line["level"] == "error"] == []
    assert [line["message"] for line in lines if "exception" in line] == []
    assert any(line["level"] == "warning" and "connection close" in line["message"] for line in lines), lines
