"""Running the real `payments-ops` command in a subprocess against a DATA_DIR, and an embedded server whose
store the commands read (filled through the API)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.blackbox.server import Api, Server, embedded_server

PAYMENTS_OPS = str(Path(sys.executable).parent / "payments-ops")
_CLEARED = ("BROKER_URL", "EVENTSTORE_URI", "DATA_DIR", "PORT")


@dataclass(frozen=True)
class Ran:
    status: int
    stdout: str
    stderr: str


def ops_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def run_ops(data_dir: Path, *arguments: str, **extra_env: str) -> Ran:
    done = subprocess.run(
        [PAYMENTS_OPS, *arguments], env=ops_env(data_dir, **extra_env), capture_output=True, text=True, timeout=120
    )
    return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("ops-data")
    with embedded_server(data_dir, RATE_LIMIT_READ="6000/minute", RATE_LIMIT_WRITE="6000/minute") as running:
        yield running


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield Api(client)
