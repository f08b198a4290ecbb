"""Billing in services mode: the gateway and the billing worker as separate processes over the local RabbitMQ
and one SQLite event store. The main flows of the customer and subscription routes, and a billing worker killed
between appending its events and keeping its reply: RabbitMQ redelivers the command to the restarted worker,
which applies nothing twice."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox.server import (
    API,
    Process,
    base_env,
    free_port,
    free_ports,
    mint_token,
    new_key,
    new_workspace,
    start_process,
    wait_ready,
)
from tests.support.services import ledger_operations, stream_event_types
from tests.support.stripe_wire_server import SERVER_ERROR, WIRE_API_KEY, running_stripe_wire

pytestmark = pytest.mark.rabbitmq

PERMISSIONS = [
    "customer:create",
    "customer:read",
    "customer:update",
    "customer:delete",
    "subscription:create",
    "subscription:read",
    "subscription:update",
    "subscription:cancel",
]
CRASH_POINT = "billing.before_record"


@dataclass
class Services:
    base_url: str
    data_dir: Path
    env: dict[str, str]
    gateway: Process
    billing: Process
    billing_port: int

    def start_billing(self) -> None:
        env = {**self.env, "PORT": str(self.billing_port)}
        self.billing = start_process("billing", ["-m", "payments_billing"], env, self.data_dir / "logs")
        wait_ready(f"http://127.0.0.1:{self.billing_port}", [self.billing])

    def stop(self) -> None:
        self.gateway.stop()
        self.billing.stop()


@contextlib.contextmanager
def running_services(data_dir: Path, rabbitmq_url: str, **extra_env: str) -> Iterator[Services]:
    gateway_port, billing_port = free_ports(2)
    env = base_env(
        data_dir,
        BROKER_URL=rabbitmq_url,
        EVENTSTORE_URI=f"sqlite:///{data_dir / 'events.db'}",
        RPC_TIMEOUT_S="3",
        IN_FLIGHT_WINDOW_S="2",
        **extra_env,
    )
    logs = data_dir / "logs"
    billing = start_process("billing", ["-m", "payments_billing"], {**env, "PORT": str(billing_port)}, logs)
    gateway = start_process("gateway", ["-m", "payments_gateway"], {**env, "PORT": str(gateway_port)}, logs)
    running = Services(f"http://127.0.0.1:{gateway_port}", data_dir, env, gateway, billing, billing_port)
    try:
        wait_ready(f"http://127.0.0.1:{billing_port}", [billing])
        wait_ready(running.base_url, [gateway, billing])
        yield running
    finally:
        running.stop()


@pytest.fixture
def services(tmp_path: Path, isolated_rabbitmq_url: str) -> Iterator[Services]:
    with running_services(tmp_path, isolated_rabbitmq_url) as running:
        yield running


@pytest.fixture
def crashing_services(tmp_path: Path, isolated_rabbitmq_url: str) -> Iterator[Services]:
    """The billing worker kills itself (SIGKILL) the first time it reaches CRASH_POINT."""
    crash = f"{CRASH_POINT}:{tmp_path / 'crashed-once'}"
    with running_services(tmp_path, isolated_rabbitmq_url, PAYMENTS_FAULT_CRASH_ONCE=crash) as running:
        yield running


def headers(workspace: str, key: str | None = None) -> dict[str, str]:
    result = {"Authorization": f"Bearer {mint_token(workspace, PERMISSIONS)}"}
    if key:
        result["Idempotency-Key"] = key
    return result


def request(
    client: httpx.Client, method: str, route: str, workspace: str, body: Any = None, key: str | None = None
) -> httpx.Response:
    return client.request(method, f"{API}/{route}", json=body, headers=headers(workspace, key))


# Answers a client retries with the same Idempotency-Key: accepted but not answered in time (a 202, or a 503 when no
# answer came within RPC_TIMEOUT_S, as on a loaded machine) or still running (409).
UNFINISHED = (202, 409, 503)


def created(client: httpx.Client, route: str, workspace: str, body: Any) -> dict[str, Any]:
    """POST until it is done, as a client does: an UNFINISHED answer is retried with the same Idempotency-Key."""
    key, deadline = new_key(), time.monotonic() + 60
    while True:
        response = request(client, "POST", route, workspace, body, key=key)
        if response.status_code not in UNFINISHED or time.monotonic() > deadline:
            assert response.status_code == 201, response.text
            answer: dict[str, Any] = response.json()
            return answer
        time.sleep(0.2)


def test_customer_and_subscription_flows(services: Services) -> None:
    workspace, other = new_workspace(), new_workspace()
    with httpx.Client(base_url=services.base_url, timeout=30) as client:
        key = new_key()
        created = request(
            client, "POST", "customers", workspace, {"email": "a@example.com", "payment_method": "pm_card_visa"}, key
        )
        assert created.status_code == 201, created.text
        customer = created.json()
        replay = request(
            client, "POST", "customers", workspace, {"email": "a@example.com", "payment_method": "pm_card_visa"}, key
        )
        assert replay.content == created.content and replay.headers["Idempotent-Replayed"] == "true"
        assert request(client, "GET", f"customers/{customer['id']}", other).status_code == 404
        updated = request(client, "PUT", f"customers/{customer['id']}", workspace, {"name": "Ada"})
        assert updated.json()["name"] == "Ada"

        trial = request(
            client,
            "POST",
            "subscriptions",
            workspace,
            {"customer_id": customer["id"], "amount": 900, "currency": "usd", "interval": "week", "trial_days": 7},
        )
        assert trial.status_code == 201 and trial.json()["status"] == "trialing"
        active = request(
            client,
            "POST",
            "subscriptions",
            workspace,
            {"customer_id": customer["id"], "amount": 900, "currency": "usd", "interval": "month"},
        )
        assert active.json()["status"] == "active"
        path = f"subscriptions/{active.json()['id']}"
        assert request(client, "PUT", path, workspace, {"quantity": 2}).json()["quantity"] == 2
        later = request(client, "POST", f"{path}/cancel", workspace, {"at_period_end": True}).json()
        assert (later["status"], later["cancel_at_period_end"]) == ("active", True)
        assert request(client, "POST", f"{path}/cancel", workspace, {}).json()["status"] == "canceled"
        assert request(client, "POST", f"{path}/cancel", workspace, {}).status_code == 409
        assert request(client, "GET", path, other).status_code == 404

        deleted = request(client, "DELETE", f"customers/{customer['id']}", workspace)
        assert deleted.json() == {"id": customer["id"], "object": "customer", "deleted": True}
        assert request(client, "GET", f"customers/{customer['id']}", workspace).status_code == 404


def test_the_billing_worker_shows_its_circuit_breakers_on_its_health_port(services: Services) -> None:
    """As the transactions worker does: each provider's breaker in this process, with the same fields."""
    shown = httpx.get(f"http://127.0.0.1:{services.billing_port}/breakers", timeout=10)
    assert shown.status_code == 200, shown.text
    assert shown.json()["sandbox"]["state"] == "closed"
    assert set(shown.json()["sandbox"]) == {"state", "fail_counter", "fail_max", "seconds_to_half_open"}


def test_a_worker_killed_before_its_reply_is_kept_applies_the_command_once(crashing_services: Services) -> None:
    services = crashing_services
    workspace, key = new_workspace(), new_key()
    body = {"email": "crash@example.com", "payment_method": "pm_card_visa"}
    with httpx.Client(base_url=services.base_url, timeout=30) as client:
        first = request(client, "POST", "customers", workspace, body, key)
        # The worker appended CustomerCreated and killed itself before recording the reply: no answer in time.
        assert first.status_code == 503, first.text
        assert services.billing.popen.wait(timeout=30) != 0
        services.start_billing()
        deadline = time.monotonic() + 60
        while True:
            retried = request(client, "POST", "customers", workspace, body, key)
            if retried.status_code not in UNFINISHED or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # still in flight: the redelivery has not finished yet
        assert retried.status_code == 201, retried.text
        customer_id = retried.json()["id"]
    assert stream_event_types(services.data_dir, f"customer-{customer_id}") == ["CustomerCreated"]
    assert ledger_operations(services.data_dir, "create_customer") == 1


def test_a_worker_killed_while_a_deletion_cancels_subscriptions_cancels_each_once(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    # SIGKILL right after the provider canceled the first subscription, before that is recorded.
    crash = f"after_subscription_cancel_call:{tmp_path / 'crashed-once'}"
    workspace, key = new_workspace(), new_key()
    with (
        running_services(tmp_path, isolated_rabbitmq_url, PAYMENTS_FAULT_CRASH_ONCE=crash) as services,
        httpx.Client(base_url=services.base_url, timeout=30) as client,
    ):
        body = {"email": "gone@example.com", "payment_method": "pm_card_visa"}
        customer = created(client, "customers", workspace, body)
        plan = {"customer_id": customer["id"], "amount": 900, "currency": "usd", "interval": "month"}
        subscriptions = [created(client, "subscriptions", workspace, plan)["id"] for _ in range(2)]

        first = request(client, "DELETE", f"customers/{customer['id']}", workspace, key=key)
        assert first.status_code == 503, first.text
        assert services.billing.popen.wait(timeout=30) == -9
        services.start_billing()
        deadline = time.monotonic() + 60
        while True:
            retried = request(client, "DELETE", f"customers/{customer['id']}", workspace, key=key)
            if retried.status_code not in UNFINISHED or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the redelivered deletion is still running
        assert retried.status_code == 200, retried.text
        for subscription_id in subscriptions:
            assert request(client, "GET", f"subscriptions/{subscription_id}", workspace).json()["status"] == "canceled"
    for subscription_id in subscriptions:
        assert (
            stream_event_types(services.data_dir, f"subscription-{subscription_id}").count("SubscriptionCanceled") == 1
        )
    assert ledger_operations(services.data_dir, "cancel_subscription") == 2
    assert ledger_operations(services.data_dir, "delete_customer") == 1


def test_a_change_left_open_by_a_worker_that_stopped_is_finished_by_another_workers_sweep(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    """Two billing workers on one queue, as a scaled Deployment runs them. One answers a PUT 503 (Stripe failed:
    the request stays open, its key released for the sweep) and is then stopped for good (a scale-down). The
    other's sweep finishes the change, without a restart or a client retry."""
    workspace = new_workspace()
    with running_stripe_wire(WIRE_API_KEY) as wire:
        stripe = {
            "PAYMENTS_DEFAULT_PROVIDER": "stripe",
            "STRIPE_API_KEY": WIRE_API_KEY,
            "STRIPE_API_BASE": wire.base_url,
            "PROVIDER_RETRY_ATTEMPTS": "1",  # one failed call leaves the change open
            "RECOVERY_MIN_AGE_S": "1",
            "RECOVERY_INTERVAL_S": "0.5",
        }
        with (
            running_services(tmp_path, isolated_rabbitmq_url, **stripe) as services,
            httpx.Client(base_url=services.base_url, timeout=30) as client,
        ):
            second_port = free_port()
            second = start_process(
                "billing-2", ["-m", "payments_billing"], {**services.env, "PORT": str(second_port)}, tmp_path / "logs"
            )
            try:
                wait_ready(f"http://127.0.0.1:{second_port}", [second])
                customer = created(client, "customers", workspace, {"email": "open@example.com"})
                logs_before = {worker.name: len(worker.log_tail(10_000)) for worker in (services.billing, second)}
                wire.fail_next(500, SERVER_ERROR)
                answer = request(client, "PUT", f"customers/{customer['id']}", workspace, {"name": "Grace"}, new_key())
                assert answer.status_code == 503, answer.text
                handler = next(
                    worker
                    for worker in (services.billing, second)
                    if "Stripe call failed" in worker.log_tail(10_000)[logs_before[worker.name] :]
                )
                handler.stop()  # SIGTERM: it has nothing in flight, its delivery was answered and acked
                reference = customer["provider_reference"]
                deadline = time.monotonic() + 30
                while wire.customers[reference].get("name") != "Grace" and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert wire.customers[reference].get("name") == "Grace", "the change never reached Stripe"
                shown = request(client, "GET", f"customers/{customer['id']}", workspace).json()
                assert shown["name"] == "Grace", shown
            finally:
                second.stop()
