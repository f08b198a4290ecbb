"""A charge answered 202 `pending` that the transactions worker then refuses, in services mode (gateway and worker
separate processes over the real RabbitMQ). The worker is stopped while the charge is sent, so the gateway's
RPC_TIMEOUT_S passes for certain and the command waits in the queue for the restarted worker.

- A provider the worker has no credentials for (its configuration differs from what the gateway accepted): the
  client told `pending` finds the transaction `failed`, with why, in GET, the audit trail and the list.
- An Idempotency-Key that already made another kind of request (a refund): likewise `failed`, with its reason.
- A `customer_id` the gateway found gone: only an earlier request with the same Idempotency-Key can have made its
  transaction, so the gateway promises none (409 `conflict`, not 202) and a retry learns the 404.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from payments_shared import ids

from tests.blackbox.server import API, Api, Process, free_port, new_key, start_process, wait_ready
from tests.support.services import TransactionsServices, transactions_services, wait_until

pytestmark = pytest.mark.rabbitmq

WAIT_S = 60.0
# The gateway's wait for a worker; the billing worker's answer to the customer look-up must fit in it.
ENV = {"RPC_TIMEOUT_S": "5"}  # generous for a loaded machine: every test here waits it out once


@pytest.fixture
def stopped_worker(tmp_path: Path, isolated_rabbitmq_url: str) -> Iterator[TransactionsServices]:
    """The gateway up, its transactions worker killed (its queue already declared, so commands wait in it)."""
    with transactions_services(tmp_path, isolated_rabbitmq_url, ENV) as services:
        services.kill_worker()
        yield services


def start_billing(services: TransactionsServices) -> Process:
    port = free_port()
    env = {**services.env, "PORT": str(port)}
    billing = start_process("billing", ["-m", "payments_billing"], env, services.data_dir / "logs")
    wait_ready(f"http://127.0.0.1:{port}", [billing])
    return billing


def shown(api: Api, transaction_id: str) -> dict[str, Any] | None:
    response = api.get(transaction_id)
    return response.json() if response.status_code == 200 else None


def listed_failed(api: Api) -> list[str]:
    response = api.http.get(f"{API}/transactions", params={"status": "failed"}, headers=api.headers())
    return [entry["id"] for entry in response.json().get("data", [])] if response.status_code == 200 else []


def test_a_pending_charge_the_worker_cannot_carry_out_is_visibly_failed(
    stopped_worker: TransactionsServices,
) -> None:
    services = stopped_worker
    with httpx.Client(base_url=services.base_url, timeout=30) as http:
        api = Api(http)
        key = new_key()
        pending = api.charge(key=key, provider="authnet")  # no Authorize.net credentials on the worker
        assert pending.status_code == 202, pending.text
        transaction_id = pending.json()["id"]
        assert pending.json()["status"] == "pending"

        services.start_worker()
        wait_until(lambda: shown(api, transaction_id) is not None, WAIT_S, f"GET {transaction_id} to answer")
        failed = shown(api, transaction_id)
        assert failed is not None
        assert (failed["status"], failed["provider"], failed["amount_captured"]) == ("failed", "authnet", 0)
        assert failed["failure_code"] == "invalid_provider"
        assert failed["failure_message"] == "The provider 'authnet' is unknown or not configured."
        trail = api.events(transaction_id).json()["data"]
        assert [event["type"] for event in trail] == ["TransactionRequested", "PaymentFailed"]
        wait_until(lambda: transaction_id in listed_failed(api), WAIT_S, "the list to show it failed")

        again = api.charge(key=key, provider="authnet")
        assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (400, "true"), again.text
        error = again.json()["error"]
        assert (error["param"], error["transaction_id"]) == ("provider", transaction_id)


def test_a_pending_charge_whose_key_made_another_request_is_visibly_failed(
    stopped_worker: TransactionsServices,
) -> None:
    services = stopped_worker
    services.start_worker()
    with httpx.Client(base_url=services.base_url, timeout=30) as http:
        api = Api(http)
        key = new_key()
        charged = api.charge()
        assert charged.status_code == 201, charged.text
        assert api.post("refund", {"transaction_id": charged.json()["id"]}, key=key).status_code == 200
        services.kill_worker()

        pending = api.charge(key=key)
        assert pending.status_code == 202, pending.text
        transaction_id = pending.json()["id"]
        services.start_worker()
        wait_until(lambda: shown(api, transaction_id) is not None, WAIT_S, f"GET {transaction_id} to answer")
        failed = shown(api, transaction_id)
        assert failed is not None
        assert (failed["status"], failed["failure_code"]) == ("failed", "idempotency_key_reused")
        assert api.get(charged.json()["id"]).json()["status"] == "refunded"  # the key's own request untouched


def test_a_charge_for_a_customer_found_gone_is_not_promised_as_pending(stopped_worker: TransactionsServices) -> None:
    services = stopped_worker
    billing = start_billing(services)
    try:
        with httpx.Client(base_url=services.base_url, timeout=30) as http:
            api = Api(http)
            key, missing = new_key(), ids.new_id("cus")
            first = api.charge(key=key, customer_id=missing)
            assert first.status_code == 409, first.text
            assert (first.json()["error"]["type"], first.json()["error"]["code"]) == (
                "conflict",
                "idempotency_key_in_use",
            )

            services.start_worker()
            retried = retry_while_in_progress(lambda: api.charge(key=key, customer_id=missing))
            assert retried.status_code == 404, retried.text
            assert retried.json()["error"]["param"] == "customer_id"
            assert api.get(ids.derived_id("txn", ids.command_id(api.workspace, key))).status_code == 404
    finally:
        billing.stop()


def retry_while_in_progress(send: Any) -> httpx.Response:
    """Resend as a client does while the answer is 409 (its first request still queued or running)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response: httpx.Response = send()
        if response.status_code != 409 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)
