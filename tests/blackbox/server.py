"""Running the real processes for black-box tests: `python -m payments_embedded` (or the separate services) on
a free port with a temporary DATA_DIR, waiting for /readyz; plus token minting and a small API client."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

JWT_SECRET = "blackbox-test-secret-0123456789abcdef-0123456789abcdef"
READY_TIMEOUT_S = 60.0
API = "/api/v1/payments"
# The variables a developer's shell might set that would change what the tests start.
_CLEARED = (
    "BROKER_URL",
    "EVENTSTORE_URI",
    "PORT",
    "DATA_DIR",
    "PAYMENTS_FAULT_CRASH_ONCE",
    "PAYMENTS_JWT_ISSUER",
    "PAYMENTS_JWT_AUDIENCE",
    "RATE_LIMIT_STORAGE",
)


def free_ports(count: int) -> list[int]:
    """`count` different free ports. Probed together: two probes one after the other get the same port (the first
    one's, just released) about 1 time in 14,000, and the second process to start then cannot listen."""
    with contextlib.ExitStack() as open_probes:
        probes = [open_probes.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def free_port() -> int:
    return free_ports(1)[0]


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update({"DATA_DIR": str(data_dir), "PAYMENTS_JWT_SECRET": JWT_SECRET, "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


@dataclass
class Process:
    """A started process whose output goes to a log file (read back when something fails)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_process(name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, *args], env=dict(env), stdout=log, stderr=subprocess.STDOUT, cwd=log_dir
        )
    return Process(name, popen, log_path)


def wait_ready(base_url: str, processes: list[Process], timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited ({process.popen.returncode}):\n{process.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in processes)
    raise RuntimeError(f"{base_url} not ready within {timeout_s} s\n{tails}")


@dataclass
class Server:
    base_url: str
    data_dir: Path
    processes: list[Process] = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@contextlib.contextmanager
def embedded_server(data_dir: Path, **extra_env: str) -> Iterator[Server]:
    port = free_port()
    env = base_env(data_dir, PORT=str(port), BROKER_URL="memory://", **extra_env)
    process = start_process("embedded", ["-m", "payments_embedded"], env, data_dir / "logs")
    server = Server(f"http://127.0.0.1:{port}", data_dir, [process])
    try:
        wait_ready(server.base_url, server.processes)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def services(data_dir: Path, broker_url: str, **extra_env: str) -> Iterator[Server]:
    """Services mode: the transactions worker and the gateway as separate processes over `broker_url`, sharing
    one SQLite event store under `data_dir`; ready once both answer /readyz."""
    env = base_env(data_dir, BROKER_URL=broker_url, EVENTSTORE_URI=f"sqlite:///{data_dir / 'events.db'}", **extra_env)
    worker_port, gateway_port = free_ports(2)
    logs = data_dir / "logs"
    worker = start_process("transactions", ["-m", "payments_transactions"], {**env, "PORT": str(worker_port)}, logs)
    processes = [worker]
    server = Server(f"http://127.0.0.1:{gateway_port}", data_dir, processes)
    try:
        wait_ready(f"http://127.0.0.1:{worker_port}", processes)
        processes.append(start_process("gateway", ["-m", "payments_gateway"], {**env, "PORT": str(gateway_port)}, logs))
        wait_ready(server.base_url, processes)
        yield server
    finally:
        server.stop()


# Every permission of API.md's table (`payments:admin` covers the `payments:*` ones).
EVERY_PERMISSION = [
    "payments:admin",
    *(f"customer:{verb}" for verb in ("create", "read", "update", "delete")),
    *(f"subscription:{verb}" for verb in ("create", "read", "update", "cancel")),
]


def mint_token(
    workspace: str,
    permissions: list[str] | None = None,
    sub: str = "blackbox-tester",
    expires_in_s: int = 600,
    secret: str = JWT_SECRET,
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {
        "sub": sub,
        "workspace": workspace,
        "permissions": ["payments:admin"] if permissions is None else permissions,
        "exp": int(time.time()) + expires_in_s,
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def new_workspace() -> str:
    return f"ws_{uuid.uuid4().hex[:12]}"


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


@dataclass
class Api:
    """A client of one workspace; `token` is an admin token unless a test passes another."""

    http: httpx.Client
    workspace: str = field(default_factory=new_workspace)

    @property
    def token(self) -> str:
        return mint_token(self.workspace)

    def headers(self, token: str | None = None, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def post(self, route: str, body: Any, key: str | None = None, token: str | None = None) -> httpx.Response:
        return self.http.post(f"{API}/{route}", json=body, headers=self.headers(token, key))

    def charge(self, key: str | None = None, **body: Any) -> httpx.Response:
        return self.post("charge", {"amount": 1099, "currency": "usd", "payment_method": "pm_card_visa", **body}, key)

    def authorize(self, key: str | None = None, **body: Any) -> httpx.Response:
        return self.post(
            "authorize", {"amount": 5000, "currency": "eur", "payment_method": "pm_card_visa", **body}, key
        )

    def get(self, transaction_id: str, token: str | None = None) -> httpx.Response:
        return self.http.get(f"{API}/transactions/{transaction_id}", headers=self.headers(token))

    def events(self, transaction_id: str, token: str | None = None) -> httpx.Response:
        return self.http.get(f"{API}/transactions/{transaction_id}/events", headers=self.headers(token))
