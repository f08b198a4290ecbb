"""Event store unavailable (services mode): another connection holds the SQLite file's write lock. Commands then
fail visibly — 503 `provider_unavailable` (code `service_unavailable`) with Retry-After, before the gateway's
deadline — the worker reports itself not ready, and nothing is half-applied: no event, no provider call. Once
the lock is gone, the same requests with the same Idempotency-Keys succeed, each exactly once."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from payments_shared import ids

from tests.blackbox.server import Api, new_key, new_workspace
from tests.contract.eventstore_support import read_only
from tests.integration.test_billing_services_mode import request, running_services
from tests.support.services import (
    events_by_stream,
    ledger,
    ledger_operations,
    stored_events,
    transactions_services,
    wait_until,
)

pytestmark = pytest.mark.rabbitmq

# The worker gives up on the lock after the store's busy timeout (5 s): the gateway must still be waiting.
ENV = {"RPC_TIMEOUT_S": "12"}
STORE_DOWN_S = 4.0  # under the delivery limit's pauses (4 x 2 s)


@contextlib.contextmanager
def write_locked(database: Path) -> Iterator[None]:
    """Hold SQLite's write lock on `database` (as a stuck writer in another process would)."""
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_locked_event_store_is_a_503_with_nothing_half_applied_and_work_resumes(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    with transactions_services(tmp_path, isolated_rabbitmq_url, ENV) as services:
        api = Api(httpx.Client(base_url=services.base_url, timeout=30))
        captured = api.charge(key=new_key(), amount=5000)
        assert captured.status_code == 201, captured.text
        transaction_id = captured.json()["id"]
        events_before = len(stored_events(tmp_path))
        ledger_before = ledger(tmp_path)
        charge_key, refund_key = new_key(), new_key()
        refund_body = {"transaction_id": transaction_id, "amount": 1200}

        with write_locked(tmp_path / "events.db"), ThreadPoolExecutor(3) as pool:
            charge = pool.submit(api.charge, charge_key, amount=777)
            refund = pool.submit(api.post, "refund", refund_body, refund_key)
            readiness = pool.submit(httpx.get, f"{services.worker_url}/readyz", timeout=30)
            for response in (charge.result(), refund.result()):
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert (error["type"], error["code"]) == ("provider_unavailable", "service_unavailable")
                assert "Retry-After" in response.headers
            assert readiness.result().status_code == 503
            assert readiness.result().json()["checks"]["eventstore"] != "ok"

        assert len(stored_events(tmp_path)) == events_before  # nothing half-applied
        assert ledger(tmp_path) == ledger_before
        charge_transaction = ids.derived_id("txn", ids.command_id(api.workspace, charge_key))
        assert charge_transaction not in events_by_stream(tmp_path)

        retried_charge = api.charge(charge_key, amount=777)
        assert (retried_charge.status_code, retried_charge.json()["id"]) == (201, charge_transaction)
        retried_refund = api.post("refund", refund_body, refund_key)
        assert retried_refund.status_code == 200, retried_refund.text
        assert (retried_refund.json()["status"], retried_refund.json()["amount_refunded"]) == (
            "partially_refunded",
            1200,
        )
        assert httpx.get(f"{services.worker_url}/readyz", timeout=10).status_code == 200
        operations = sorted(row.operation for row in ledger(tmp_path))
        assert operations == ["pay", "pay", "refund"]  # one provider call per key


def test_a_charge_answered_202_while_the_store_is_locked_is_carried_out_once_it_is_back(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    """The gateway's deadline passes before the worker gives up on the lock: the client has its 202 `pending`
    (the command "is still carried out"), so the worker's 503 reaches no one and must not end the command."""
    with transactions_services(tmp_path, isolated_rabbitmq_url, {"RPC_TIMEOUT_S": "2"}) as services:
        api = Api(httpx.Client(base_url=services.base_url, timeout=30))
        key = new_key()
        transaction_id = ids.derived_id("txn", ids.command_id(api.workspace, key))
        with write_locked(tmp_path / "events.db"):
            accepted = api.charge(key=key, amount=2468)
            assert (accepted.status_code, accepted.json()["status"]) == (202, "pending"), accepted.text
            wait_until(
                lambda: "event store unavailable" in services.worker.log_tail(), 15, "the worker to give up on the lock"
            )

        wait_until(lambda: api.get(transaction_id).status_code == 200, 30, "the accepted charge to be recorded")
        wait_until(lambda: api.get(transaction_id).json()["status"] == "captured", 30, "the accepted charge")
        assert [(row.operation, row.amount) for row in ledger(tmp_path)] == [("pay", 2468)]
        replay = api.charge(key=key, amount=2468)
        assert (replay.status_code, replay.json()["id"], replay.json()["status"]) == (201, transaction_id, "captured")


def test_a_billing_command_met_by_a_failing_store_is_carried_out_once_it_is_back(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    """The billing worker's store fails at once (a read-only file; a write lock would hold each delivery for the
    busy timeout) while a customer is created: the message is redelivered after a pause each time, not at once, so
    the store is back before the delivery limit is used up and the command is carried out, once, by a redelivery
    (the client does not retry)."""
    with running_services(tmp_path, isolated_rabbitmq_url) as services:
        client = httpx.Client(base_url=services.base_url, timeout=30)

        def created() -> bool:
            return request(client, "GET", f"customers/{customer_id}", workspace).status_code == 200

        workspace, key = new_workspace(), new_key()
        customer_id = ids.derived_id("cus", ids.command_id(workspace, key))
        body = {"email": "store-down@example.com", "payment_method": "pm_card_visa"}
        with read_only(tmp_path / "events.db"):
            back_at = time.monotonic() + STORE_DOWN_S
            first = request(client, "POST", "customers", workspace, body, key)
            assert first.status_code != 201, first.text
            wait_until(lambda: "EventStoreUnavailable" in services.billing.log_tail(), 10, "the store to fail")
            time.sleep(max(0.0, back_at - time.monotonic()))

        wait_until(created, 30, "the customer to be created by a redelivery")
        assert ledger_operations(tmp_path, "create_customer") == 1
        replay = request(client, "POST", "customers", workspace, body, key)
        assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (201, "true"), replay.text
