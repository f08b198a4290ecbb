"""Services mode for fault tests: the real gateway and transactions worker processes (`python -m payments_gateway`,
`python -m payments_transactions`) over a RabbitMQ virtual host and one SQLite event store, with the worker
killable and restartable, and direct read-only looks at the event store and the sandbox ledger.

Builds on tests/blackbox/server.py (process start, readiness, tokens)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.blackbox.server import Process, base_env, free_port, free_ports, start_process, wait_ready

# Generous budgets: these tests send far more than a client normally would.
UNLIMITED = {"RATE_LIMIT_READ": "1000000/minute", "RATE_LIMIT_WRITE": "1000000/minute"}


@dataclass
class TransactionsServices:
    data_dir: Path
    env: dict[str, str]
    worker_port: int
    worker_env: dict[str, str]
    gateway: Process | None = None
    workers: list[Process] = field(default_factory=list)  # every worker started; the last one is current
    competitors: list[Process] = field(default_factory=list)  # more workers on the same queue, each its own port
    kills: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def gateway_port(self) -> int:
        return int(self.env["GATEWAY_PORT"])

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def worker(self) -> Process:
        return self.workers[-1]

    def start_worker(self, wait: bool = True, **extra_env: str) -> Process:
        env = {**self.env, **self.worker_env, **extra_env, "PORT": str(self.worker_port)}
        process = start_process("transactions", ["-m", "payments_transactions"], env, self.data_dir / "logs")
        self.workers.append(process)
        if wait:
            wait_ready(self.worker_url, [process])
        return process

    def start_competing_worker(self) -> Process:
        """One more worker consuming the same queue (as a scaled Deployment runs them), ready when returned."""
        port = free_port()
        env = {**self.env, **self.worker_env, "PORT": str(port)}
        process = start_process(
            f"transactions-{len(self.competitors) + 2}", ["-m", "payments_transactions"], env, self.data_dir / "logs"
        )
        self.competitors.append(process)
        wait_ready(f"http://127.0.0.1:{port}", [process])
        return process

    def worker_ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.worker_url}/readyz", timeout=1).status_code == 200
        return False

    def kill_worker(self) -> None:
        """SIGKILL: no cleanup, no acks; RabbitMQ redelivers what it held."""
        self.worker.kill()
        self.kills += 1

    def breakers(self) -> dict[str, Any]:
        response = httpx.get(f"{self.worker_url}/breakers", timeout=5)
        response.raise_for_status()
        breakers: dict[str, Any] = response.json()
        return breakers

    def logs(self) -> str:
        shown = [*([self.gateway] if self.gateway else []), *self.workers[-2:]]
        return "\n".join(f"--- {process.name}\n{process.log_tail(30)}" for process in shown)

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for process in [*self.workers, *self.competitors]:
            process.stop()


@contextlib.contextmanager
def transactions_services(
    data_dir: Path,
    broker_url: str,
    env: Mapping[str, str] | None = None,
    *,
    gateway_broker_url: str | None = None,
    worker_env: Mapping[str, str] | None = None,
) -> Iterator[TransactionsServices]:
    """The gateway and one transactions worker, both ready. `gateway_broker_url` lets the gateway reach RabbitMQ
    another way than the worker (e.g. through a TCP proxy); `worker_env` applies to every worker started."""
    gateway_port, worker_port = free_ports(2)
    common = base_env(
        data_dir,
        BROKER_URL=broker_url,
        EVENTSTORE_URI=f"sqlite:///{data_dir / 'events.db'}",
        SANDBOX_DB_PATH=str(data_dir / "sandbox.db"),
        GATEWAY_PORT=str(gateway_port),
        **UNLIMITED,
        **(env or {}),
    )
    gateway_env = {**common, "PORT": str(gateway_port)}
    if gateway_broker_url is not None:
        gateway_env["BROKER_URL"] = gateway_broker_url
    logs = data_dir / "logs"
    services = TransactionsServices(data_dir, common, worker_port, dict(worker_env or {}))
    try:
        services.start_worker()
        services.gateway = start_process("gateway", ["-m", "payments_gateway"], gateway_env, logs)
        wait_ready(services.base_url, [services.gateway, services.worker])
        yield services
    finally:
        services.stop()


# ---- looking at what was stored --------------------------------------------------------------------------


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


@dataclass(frozen=True)
class StoredEvent:
    stream: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]


def stored_events(data_dir: Path) -> list[StoredEvent]:
    """Every event in the SQLite event store, in global order."""
    database = _read_only(data_dir / "events.db")
    try:
        rows = database.execute("SELECT stream, type, data, metadata FROM events ORDER BY position").fetchall()
    finally:
        database.close()
    return [StoredEvent(str(s), str(t), json.loads(d), json.loads(m)) for s, t, d, m in rows]


def stream_event_types(data_dir: Path, stream: str) -> list[str]:
    """The types of one stream's events, in order."""
    return [event.type for event in stored_events(data_dir) if event.stream == stream]


def events_by_stream(data_dir: Path, prefix: str = "transaction-") -> dict[str, list[StoredEvent]]:
    streams: dict[str, list[StoredEvent]] = {}
    for event in stored_events(data_dir):
        if event.stream.startswith(prefix):
            streams.setdefault(event.stream.removeprefix(prefix), []).append(event)
    return streams


@dataclass(frozen=True)
class LedgerRow:
    idempotency_key: str
    operation: str
    reference: str | None
    amount: int
    outcome: str
    captured: bool


def ledger(data_dir: Path) -> list[LedgerRow]:
    """The sandbox provider's own record: one row per idempotency key it acted on."""
    path = data_dir / "sandbox.db"
    if not path.exists():
        return []
    database = _read_only(path)
    try:
        rows = database.execute(
            "SELECT idempotency_key, operation, reference, amount, outcome, captured FROM ledger ORDER BY rowid"
        ).fetchall()
    finally:
        database.close()
    return [LedgerRow(str(k), str(op), ref, int(a), str(o), bool(c)) for k, op, ref, a, o, c in rows]


def ledger_operations(data_dir: Path, operation: str) -> int:
    """How many times the sandbox acted on `operation` (one row per idempotency key)."""
    return sum(1 for row in ledger(data_dir) if row.operation == operation)


def wait_until(condition: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
