"""Dead letters (services mode): a charge whose worker dies on it at every delivery (SIGKILL right after the
provider call, before the outcome is recorded; five times: the delivery limit) is dead-lettered by RabbitMQ; the
provider moved the money once (the same idempotency key every time). `payments-ops dlq list`
shows it with its transaction and reason; its transaction is visibly `pending` meanwhile (its request recorded),
and the recovery sweep drives it to its outcome with the same idempotency key. `payments-ops dlq requeue ID` puts
it back: delivered again, it is answered from the stream, and no money moves twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from payments_shared import ids

from tests.blackbox.server import Api, new_key
from tests.support.services import TransactionsServices, events_by_stream, ledger, transactions_services, wait_until

pytestmark = pytest.mark.rabbitmq

DELIVERY_LIMIT = 5  # payments_shared.broker.factory.open_broker's default
PAYMENTS_OPS = str(Path(sys.executable).parent / "payments-ops")


def payments_ops(services: TransactionsServices, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PAYMENTS_OPS, *arguments], env=services.env, capture_output=True, text=True, timeout=60)


def dead_letters(services: TransactionsServices) -> list[dict[str, object]]:
    listed = payments_ops(services, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters: list[dict[str, object]] = json.loads(listed.stdout)
    return letters


def keep_a_worker_running(services: TransactionsServices, markers: list[Path]) -> bool:
    """Restart the worker whenever it killed itself; True once every crash has happened and it is up."""
    if services.worker.popen.poll() is not None:
        services.start_worker(wait=False)
        return False
    return all(marker.exists() for marker in markers) and services.worker_ready()


def test_a_command_past_its_delivery_limit_is_dead_lettered_listed_swept_and_requeued(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    markers = [tmp_path / f"crashed-{n}" for n in range(DELIVERY_LIMIT)]
    crash_every_delivery = ",".join(f"after_provider_call:{marker}" for marker in markers)
    env = {"RPC_TIMEOUT_S": "2", "RECOVERY_MIN_AGE_S": "3600", "PAYMENTS_FAULT_CRASH_ONCE": crash_every_delivery}
    with transactions_services(tmp_path, isolated_rabbitmq_url, env) as services:
        api = Api(httpx.Client(base_url=services.base_url, timeout=30))
        key = new_key()
        transaction_id = ids.derived_id("txn", ids.command_id(api.workspace, key))
        accepted = api.charge(key=key, amount=4321)
        assert (accepted.status_code, accepted.json()["status"]) == (202, "pending")
        wait_until(lambda: keep_a_worker_running(services, markers), 90, "five crashes", interval_s=0.2)
        wait_until(lambda: dead_letters(services) != [], 30, "the dead letter")

        [letter] = dead_letters(services)
        assert (letter["type"], letter["transaction_id"], letter["queue"]) == (
            "charge",
            transaction_id,
            "payments.transactions",
        )
        assert "delivery_limit" in str(letter["reason"])
        pending = api.get(transaction_id)
        assert (pending.status_code, pending.json()["status"]) == (200, "pending")
        assert [event["type"] for event in api.events(transaction_id).json()["data"]] == ["TransactionRequested"]
        assert [(row.operation, row.amount) for row in ledger(tmp_path)] == [("pay", 4321)]

        services.kill_worker()  # the next worker sweeps at start-up everything idle for more than 0 s
        services.worker_env["RECOVERY_MIN_AGE_S"] = "0"
        services.start_worker()
        wait_until(lambda: api.get(transaction_id).json()["status"] == "captured", 30, "the sweep")

        requeued = payments_ops(services, "dlq", "requeue", str(letter["message_id"]))
        assert requeued.returncode == 0, requeued.stderr
        assert dead_letters(services) == []
        missing = payments_ops(services, "dlq", "requeue", str(letter["message_id"]))
        assert missing.returncode == 1
        replay = api.charge(key=key, amount=4321)
        assert (replay.status_code, replay.json()["status"]) == (201, "captured")
        wait_until(lambda: len(events_by_stream(tmp_path)[transaction_id]) >= 2, 10, "the outcome")
        outcome_types = [event.type for event in events_by_stream(tmp_path)[transaction_id]]
        assert outcome_types.count("PaymentCaptured") == 1
        assert [(row.operation, row.amount) for row in ledger(tmp_path)] == [("pay", 4321)]
