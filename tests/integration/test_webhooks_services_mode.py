"""Webhooks in services mode: gateway, transactions worker, billing worker and webhook-ingest (port of its own)
as separate processes over the local RabbitMQ and one SQLite event store, localstripe as Stripe delivering its
signed webhooks to webhook-ingest. The main flows, and an event recorded while RabbitMQ could not take it
forwarded later by the sweep."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox.server import (
    Process,
    base_env,
    free_port,
    free_ports,
    new_workspace,
    start_process,
    wait_ready,
)
from tests.blackbox.stripe_client import StripeClient as Client
from tests.integration.test_eventstore_unavailable import write_locked
from tests.support.localstripe_server import authenticate, running_localstripe, three_d_secure_method
from tests.support.rabbitmq import fresh_vhost
from tests.support.services import wait_until
from tests.support.stripe_webhooks import signed_stripe_event
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq

STRIPE_KEY = "sk_test_services_webhooks_0123456789"
WEBHOOK_SECRET = "whsec_services_webhooks_0123456789"


@dataclass
class Services:
    gateway_url: str
    ingest_url: str
    stripe_url: str
    data_dir: Path
    processes: list[Process]
    env: dict[str, str]
    urls: dict[str, str]  # every process's, by name


@contextlib.contextmanager
def running_services(data_dir: Path, rabbitmq_url: str) -> Iterator[Services]:
    with running_localstripe(data_dir / "localstripe.log") as stripe_url:
        env = base_env(
            data_dir,
            BROKER_URL=rabbitmq_url,
            EVENTSTORE_URI=f"sqlite:///{data_dir / 'events.db'}",
            STRIPE_API_KEY=STRIPE_KEY,
            STRIPE_API_BASE=stripe_url,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            AUTHNET_SIGNATURE_KEY="unused-here",
            RPC_TIMEOUT_S="10",
            WEBHOOK_FORWARD_GRACE_S="0",
            WEBHOOK_SWEEP_INTERVAL_S="0.5",
        )
        names = ("transactions", "billing", "webhook_ingest", "gateway")
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        processes: list[Process] = []
        try:
            for name, port in ports.items():
                module = f"payments_{name}"
                processes.append(start_process(name, ["-m", module], {**env, "PORT": str(port)}, data_dir / "logs"))
            for port in ports.values():
                wait_ready(f"http://127.0.0.1:{port}", processes)
            ingest_url = f"http://127.0.0.1:{ports['webhook_ingest']}"
            hook = {"url": f"{ingest_url}/api/v1/webhooks/stripe", "secret": WEBHOOK_SECRET}
            httpx.post(f"{stripe_url}/_config/webhooks/services", data=hook, timeout=10).raise_for_status()
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            yield Services(urls["gateway"], ingest_url, stripe_url, data_dir, processes, env, urls)
        finally:
            for process in reversed(processes):
                process.stop()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, isolated_rabbitmq_url: str) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("webhooks-services"), isolated_rabbitmq_url) as running:
        yield running


@pytest.fixture
def client(services: Services) -> Iterator[Client]:
    auth = {"Authorization": f"Bearer {STRIPE_KEY}"}
    with (
        httpx.Client(base_url=services.gateway_url, timeout=30) as http,
        httpx.Client(base_url=services.stripe_url, headers=auth, timeout=10) as stripe,
    ):
        yield Client(http, new_workspace(), WEBHOOK_SECRET, stripe)


def signed(event_type: str, obj: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return signed_stripe_event(WEBHOOK_SECRET, event_type, obj)


def webhook_streams(data_dir: Path) -> dict[str, list[str]]:
    database = sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True)
    try:
        rows = database.execute(
            "SELECT stream, type FROM events WHERE stream LIKE 'webhook-stripe-%' ORDER BY position"
        ).fetchall()
    finally:
        database.close()
    streams: dict[str, list[str]] = {}
    for stream, event_type in rows:
        streams.setdefault(str(stream), []).append(str(event_type))
    return streams


def any_forwarded(data_dir: Path) -> bool:
    return any("WebhookForwarded" in types for types in webhook_streams(data_dir).values())


def test_a_3ds_payment_is_captured_through_stripes_own_webhook(client: Client, services: Services) -> None:
    request = {"amount": 3000, "currency": "usd", "payment_method": three_d_secure_method(client.at_stripe)}
    transaction = client.created("charge", {**request, "provider": "stripe"})
    assert transaction["status"] == "requires_action"
    authenticate(client.at_stripe, transaction["provider_reference"])

    after = client.eventually(f"transactions/{transaction['id']}", lambda t: t["status"] != "requires_action")
    assert (after["status"], after["amount_captured"]) == ("captured", 3000)
    # Every webhook webhook-ingest recorded was also forwarded to its worker.
    streams = webhook_streams(services.data_dir)
    assert streams and all(types[0] == "WebhookReceived" for types in streams.values())


def test_a_subscription_canceled_at_stripe_is_canceled_here(client: Client) -> None:
    customer = client.created(
        "customers", {"email": "s@example.com", "provider": "stripe", "payment_method": "pm_card_visa"}
    )
    subscription = client.created(
        "subscriptions", {"customer_id": customer["id"], "amount": 900, "currency": "usd", "interval": "month"}
    )
    assert client.at_stripe.delete(f"/v1/subscriptions/{subscription['provider_reference']}").status_code == 200
    after = client.eventually(f"subscriptions/{subscription['id']}", lambda s: s["status"] == "canceled")
    assert after["status"] == "canceled"


def test_a_delivery_is_recorded_once_and_its_repeat_applies_nothing(client: Client, services: Services) -> None:
    transaction = client.created(
        "charge", {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "provider": "stripe"}
    )
    # Refunded at Stripe directly: the worker re-fetches the PaymentIntent, so Stripe must hold what the event says.
    refund = client.at_stripe.post(
        "/v1/refunds", data={"payment_intent": transaction["provider_reference"], "amount": "250"}
    )
    assert refund.status_code == 200, refund.text
    charge_object = {
        "id": f"ch_{uuid.uuid4().hex[:24]}",
        "object": "charge",
        "payment_intent": transaction["provider_reference"],
        "amount_refunded": 250,
    }
    body, headers = signed("charge.refunded", charge_object)
    with httpx.Client(base_url=services.ingest_url, timeout=30) as ingest:
        answers = [ingest.post("/api/v1/webhooks/stripe", content=body, headers=headers).json() for _ in range(3)]
    assert [answer["duplicate"] for answer in answers] == [False, True, True]
    after = client.eventually(f"transactions/{transaction['id']}", lambda t: t["status"] == "partially_refunded")
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 250)


def test_a_trailing_slash_is_404_at_every_process_never_a_redirect(services: Services) -> None:
    for base_url, path in (
        (services.ingest_url, "/api/v1/webhooks/stripe/"),
        (services.ingest_url, "/healthz/"),
        (services.gateway_url, "/api/v1/payments/charge/"),
    ):
        answer = httpx.post(f"{base_url}{path}", content=b"{}", timeout=10)
        assert answer.status_code == 404, (path, answer.headers)
        assert "location" not in answer.headers


def test_every_process_answers_head_on_its_health_routes(services: Services) -> None:
    """A load balancer or probe checking with HEAD sees what GET would answer, without the body."""
    for name, base_url in services.urls.items():
        for path in ("/healthz", "/readyz"):
            answer = httpx.head(f"{base_url}{path}", timeout=10)
            assert (answer.status_code, answer.content) == (200, b""), (name, path)


async def test_an_event_recorded_while_rabbitmq_is_unreachable_is_forwarded_once_it_is_back(
    client: Client, services: Services, isolated_rabbitmq_url: str
) -> None:
    transaction = client.created(
        "charge", {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "provider": "stripe"}
    )
    refund = client.at_stripe.post(
        "/v1/refunds", data={"payment_intent": transaction["provider_reference"], "amount": "400"}
    )
    assert refund.status_code == 200, refund.text  # at Stripe directly: what the re-fetch will find
    broker = httpx.URL(isolated_rabbitmq_url)
    async with TcpProxy(broker.host or "127.0.0.1", broker.port or 5672) as proxy:
        # A second webhook-ingest, reaching RabbitMQ only through the proxy.
        port = free_port()
        env = {**services.env, "PORT": str(port), "BROKER_URL": str(broker.copy_with(port=proxy.port))}
        ingest = start_process(
            "ingest-behind-proxy", ["-m", "payments_webhook_ingest"], env, services.data_dir / "logs"
        )
        try:
            await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [ingest])
            await proxy.cut()
            charge_object = {"id": "ch_outage", "object": "charge", "payment_intent": transaction["provider_reference"]}
            body, headers = signed("charge.refunded", {**charge_object, "amount_refunded": 400})
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                answer = await http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
            assert answer.json() == {"received": True, "duplicate": False}  # recorded, not forwarded yet
            await proxy.restore()
            after = await asyncio.to_thread(
                client.eventually, f"transactions/{transaction['id']}", lambda t: t["status"] == "partially_refunded"
            )
        finally:
            await asyncio.to_thread(ingest.stop)
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", 400)


def test_an_event_forwarded_while_the_event_store_is_locked_is_applied_once_it_is_back(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    """Nobody waits for a forwarded event's answer, and webhook-ingest counts it handed over once sent: a worker
    that cannot write the store must have it delivered again, not acknowledge it as answered 503."""
    with (
        fresh_vhost(rabbitmq_url) as own_vhost,  # not the module's: its services run beside these
        running_services(tmp_path, own_vhost) as services,
        httpx.Client(base_url=services.gateway_url, timeout=30) as http,
        httpx.Client(base_url=services.stripe_url, headers={"Authorization": f"Bearer {STRIPE_KEY}"}) as stripe,
    ):
        client = Client(http, new_workspace(), WEBHOOK_SECRET, stripe)
        transaction = client.created(
            "charge", {"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa", "provider": "stripe"}
        )
        transactions = services.processes[0]
        transactions.stop()
        dispute = {"id": "dp_store_locked", "object": "dispute", "amount": 1500, "status": "needs_response"}
        body, headers = signed(
            "charge.dispute.created", {**dispute, "payment_intent": transaction["provider_reference"]}
        )
        answer = httpx.post(f"{services.ingest_url}/api/v1/webhooks/stripe", content=body, headers=headers, timeout=30)
        assert answer.json() == {"received": True, "duplicate": False}
        wait_until(lambda: any_forwarded(tmp_path), 10, "the forward")

        with write_locked(tmp_path / "events.db"):
            env = {**services.env, "PORT": str(free_port())}
            restarted = start_process("transactions-again", ["-m", "payments_transactions"], env, tmp_path / "logs")
            services.processes.append(restarted)
            wait_until(lambda: "event store unavailable" in restarted.log_tail(), 30, "the worker to meet the lock")

        after = client.eventually(f"transactions/{transaction['id']}", lambda t: t["dispute"] is not None)
        assert after["dispute"] is not None, after
        assert (after["dispute"]["status"], after["dispute"]["amount"]) == ("needs_response", 1500)
