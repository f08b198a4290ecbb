"""Reads whose client has given up are shed by the workers, commands never (payments_shared.broker.expiry), on the
in-memory broker and on the local RabbitMQ: the gateway queues a GET of a transaction, a GET of a customer and a
charge while no worker consumes; the GETs answer 503 at the RPC deadline and the charge 202. When the workers
start, the charge is carried out and the two GETs are answered without being run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from payments_billing.main import start_billing
from payments_billing.worker import BillingWorker
from payments_gateway.app import create_app
from payments_gateway.settings import GatewaySettings
from payments_shared.broker.expiry import CLOCK_SKEW_S
from payments_shared.broker.factory import open_broker
from payments_shared.broker.port import Broker
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import EventStore
from payments_shared.providers.port import PaymentProvider
from payments_shared.providers.registry import build_providers, close_providers
from payments_shared.providers.sandbox import SandboxSettings
from payments_transactions.main import start_transactions
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker

SECRET = "read-shedding-secret-0123456789abcdef012345"
RPC_TIMEOUT_S = 0.5
CLAIMS = {"sub": "ops", "workspace": "ws_shed", "permissions": ["payments:admin", "customer:read"]}
HEADERS = {"Authorization": "Bearer " + jwt.encode({**CLAIMS, "exp": 4_102_444_800}, SECRET, algorithm="HS256")}


@dataclass
class System:
    client: httpx.AsyncClient
    broker: Broker
    store: EventStore
    settings: TransactionsSettings
    providers: Mapping[str, PaymentProvider]
    workers: list[TransactionsWorker | BillingWorker]

    async def start_workers(self) -> None:
        self.workers.append(await start_transactions(self.broker, self.store, self.providers, self.settings))
        self.workers.append(await start_billing(self.broker, self.store, self.providers, self.settings))


@pytest.fixture
async def system(broker_url: str, tmp_path: Path) -> AsyncIterator[System]:
    settings = TransactionsSettings(data_dir=tmp_path, eventstore_uri=f"sqlite:///{tmp_path / 'events.db'}")
    store = open_event_store(settings.eventstore_uri)
    broker = await open_broker(broker_url)
    gateway = GatewaySettings(payments_jwt_secret=SECRET, rpc_timeout_s=RPC_TIMEOUT_S)
    transport = httpx.ASGITransport(app=create_app(gateway, broker, {}))
    client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
    providers = build_providers(settings, tmp_path, SandboxSettings())
    running = System(client, broker, store, settings, providers, [])
    try:
        yield running
    finally:
        await client.aclose()
        for worker in running.workers:
            await worker.stop()
        await broker.close()
        await close_providers(providers)
        await store.close()


async def test_reads_queued_past_their_deadline_are_shed_and_a_queued_charge_is_carried_out(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    get_transaction = await system.client.get("/api/v1/payments/transactions/txn_missing", headers=HEADERS)
    get_customer = await system.client.get("/api/v1/payments/customers/cus_missing", headers=HEADERS)
    charge = await system.client.post(
        "/api/v1/payments/charge",
        json={"amount": 1099, "currency": "usd", "payment_method": "pm_card_visa"},
        headers={**HEADERS, "Idempotency-Key": "shed-charge"},
    )
    assert (get_transaction.status_code, get_customer.status_code, charge.status_code) == (503, 503, 202)
    queued_at = time.monotonic()
    await asyncio.sleep(max(0.0, RPC_TIMEOUT_S + CLOCK_SKEW_S + 0.2 - (time.monotonic() - queued_at)))

    with caplog.at_level(logging.INFO, logger="payments_shared.broker.expiry"):
        await system.start_workers()
        transaction = await _settled(system.client, charge.json()["id"])
    assert transaction["status"] == "captured"
    shed = {str(getattr(record, "command", "")) for record in caplog.records if "shed" in record.getMessage()}
    assert shed == {"get_customer", "get_transaction"}  # a set: a polling GET of _settled may be shed as well


async def _settled(client: httpx.AsyncClient, transaction_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = await client.get(f"/api/v1/payments/transactions/{transaction_id}", headers=HEADERS)
        if response.status_code == 200 and response.json()["status"] != "pending":
            body: dict[str, object] = response.json()
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{transaction_id} was not carried out")
