"""The crash storm, shared by tests/integration/test_crash_storm.py and bench/chaos.py: concurrent clients send
charges with Idempotency-Keys and retry on every error, 202, 409 and timeout, while the transactions worker is
SIGKILLed and restarted about every second; then the event store and the sandbox ledger are compared key by key."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from payments_shared import ids

from tests.blackbox.server import API, mint_token
from tests.support.services import TransactionsServices, events_by_stream, ledger

# What a client keeps retrying until: a final answer (status code → the transaction statuses it may carry).
FINAL_ANSWERS = {201: {"captured", "requires_action"}, 402: {"failed"}}
CARDS = [("pm_card_visa", 8), ("pm_card_chargeDeclined", 1), ("pm_card_authenticationRequired", 1)]
PAYMENT_OUTCOMES = {
    "PaymentCaptured": "captured",
    "PaymentFailed": "failed",
    "PaymentRequiresAction": "requires_action",
}
LEDGER_STATUS = {"approved": "captured", "declined": "failed", "requires_action": "requires_action"}
CLIENT_TIMEOUT_S = 15.0
# Short windows so that a charge a dead worker left open is taken over or swept within seconds; a provider
# latency and a small prefetch keep many charges in flight (between their `…Requested` and their outcome) at
# every kill, and the storm spread over many kills.
STORM_ENV = {
    "RPC_TIMEOUT_S": "2",
    "IN_FLIGHT_WINDOW_S": "2",
    "RECOVERY_MIN_AGE_S": "2",
    "RECOVERY_INTERVAL_S": "1",
    "SANDBOX_LATENCY_MS": "150",
    "TRANSACTIONS_PREFETCH": "8",
}


@dataclass(frozen=True)
class Plan:
    key: str
    amount: int
    card: str

    def transaction_id(self, workspace: str) -> str:
        return ids.derived_id("txn", ids.command_id(workspace, self.key))


def plans(count: int, seed: int = 8) -> list[Plan]:
    rng = random.Random(seed)
    cards = [card for card, weight in CARDS for _ in range(weight)]
    run = f"{rng.getrandbits(32):08x}"
    return [Plan(f"storm-{run}-{n}", rng.randint(100, 99_999), rng.choice(cards)) for n in range(count)]


@dataclass
class ClientStats:
    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # status code or error name → count
    final: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # key → (code, transaction id, status)


async def _charge_until_final(
    http: httpx.AsyncClient, token: str, plan: Plan, stats: ClientStats, deadline: float
) -> None:
    body = {"amount": plan.amount, "currency": "usd", "payment_method": plan.card}
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": plan.key}
    pause = 0.05
    while time.monotonic() < deadline:
        stats.requests += 1
        try:
            response = await http.post(f"{API}/charge", json=body, headers=headers, timeout=CLIENT_TIMEOUT_S)
        except httpx.HTTPError as error:
            stats.answers[type(error).__name__] += 1
        else:
            stats.answers[str(response.status_code)] += 1
            if response.status_code in FINAL_ANSWERS:
                answer = response.json()
                if response.status_code == 402:
                    stats.final[plan.key] = (402, answer["error"]["transaction_id"], "failed")
                else:
                    stats.final[plan.key] = (response.status_code, answer["id"], answer["status"])
                return
        await asyncio.sleep(pause + random.uniform(0, pause))
        pause = min(1.0, pause * 2)


async def run_clients(
    base_url: str, workspace: str, planned: list[Plan], concurrency: int, budget_s: float
) -> ClientStats:
    """Every plan charged by `concurrency` clients, each retrying its charge until a final answer."""
    stats = ClientStats()
    token = mint_token(workspace, ["payments:charge", "payments:read"], expires_in_s=3600)
    queue: asyncio.Queue[Plan] = asyncio.Queue()
    for plan in planned:
        queue.put_nowait(plan)
    deadline = time.monotonic() + budget_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as http:

        async def client() -> None:
            while not queue.empty():
                await _charge_until_final(http, token, queue.get_nowait(), stats, deadline)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return stats


class Killer:
    """A thread that SIGKILLs the transactions worker about `period_s` after it became ready, and starts a new
    one, until stopped; then leaves one worker running."""

    def __init__(self, services: TransactionsServices, period_s: float = 1.0, seed: int = 1) -> None:
        self.services = services
        self.period_s = period_s
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-killer", daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.services.worker.popen.poll() is not None:
            self.services.start_worker()

    def _run(self) -> None:
        while not self._stop.is_set():
            while not self.services.worker_ready():
                if self._stop.is_set() or self.services.worker.popen.poll() is not None:
                    break
                time.sleep(0.05)
            if self._stop.wait(self._rng.uniform(0.5, 1.5) * self.period_s):
                return
            self.services.kill_worker()
            self.services.start_worker(wait=False)


@dataclass
class Verdict:
    expected: int
    lost: list[str]  # keys without a transaction, or whose transaction never reached an outcome
    doubled: list[str]  # keys with more than one outcome, or a ledger charge that no key explains
    mismatched: list[str]  # the event store and the ledger (or the client's answer) disagree
    amount_in_store: int
    amount_in_ledger: int
    statuses: Counter[str]

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled or self.mismatched) and self.amount_in_store == self.amount_in_ledger


def verify(data_dir: Path, workspace: str, planned: list[Plan], stats: ClientStats) -> Verdict:
    streams = events_by_stream(data_dir)
    pay_rows = [row for row in ledger(data_dir) if row.operation == "pay"]
    rows_by_key: dict[str, list[Any]] = {}
    for row in pay_rows:
        rows_by_key.setdefault(row.idempotency_key, []).append(row)
    lost: list[str] = []
    doubled: list[str] = []
    mismatched: list[str] = []
    statuses: Counter[str] = Counter()
    amount_in_store = 0
    command_ids = set()
    for plan in planned:
        command_id = ids.command_id(workspace, plan.key)
        command_ids.add(command_id)
        events = streams.get(plan.transaction_id(workspace), [])
        outcomes = [event for event in events if event.type in PAYMENT_OUTCOMES]
        requested = [event for event in events if event.type == "TransactionRequested"]
        if not outcomes:
            lost.append(plan.key)
            continue
        if len(outcomes) > 1 or len(requested) != 1 or len(rows_by_key.get(command_id, [])) > 1:
            doubled.append(plan.key)
        status = PAYMENT_OUTCOMES[outcomes[0].type]
        statuses[status] += 1
        if outcomes[0].type == "PaymentCaptured":
            amount_in_store += int(outcomes[0].data["amount"])
        rows = rows_by_key.get(command_id, [])
        if not rows or LEDGER_STATUS.get(rows[0].outcome) != status or rows[0].amount != plan.amount:
            mismatched.append(plan.key)
        final = stats.final.get(plan.key)
        if final is not None and (final[1], final[2]) != (plan.transaction_id(workspace), status):
            mismatched.append(plan.key)
    doubled.extend(row.idempotency_key for row in pay_rows if row.idempotency_key not in command_ids)
    amount_in_ledger = sum(row.amount for row in pay_rows if row.captured)
    return Verdict(len(planned), lost, doubled, mismatched, amount_in_store, amount_in_ledger, statuses)
