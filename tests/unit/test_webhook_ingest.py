"""webhook-ingest's app in process (in-memory store and broker): record once, forward, refuse, and the sweep
that forwards what a failed send left behind."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
from payments_shared.broker.memory import InMemoryBroker
from payments_shared.broker.port import Broker, BrokerUnavailable, Message
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.eventstore.port import EventStoreUnavailable, NewEvent, RecordedEvent
from payments_shared.messages import BILLING_QUEUE, TRANSACTIONS_QUEUE
from payments_shared.webhook_applied import mark_applied
from payments_webhook_ingest.app import create_app
from payments_webhook_ingest.forwarding import WebhookForwarder
from payments_webhook_ingest.settings import WebhookSettings
from payments_webhook_ingest.sweep import ForwardingSweep

from tests.support.gate import Gate, cancel_as_the_gate_opens
from tests.support.stripe_webhooks import stripe_signature_headers

SECRET = "whsec_unit"
ANET_KEY = "ANETKEY0123456789"
WAIT_S = 10.0  # how long a forward may take on a loaded machine: a bound, never a measurement


def settings(**overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "stripe_webhook_secret": f"whsec_old, {SECRET}",
        "authnet_signature_key": ANET_KEY,
        "rate_limit_webhook": "1000/minute",
        **overrides,
    }
    return WebhookSettings(**values)


def stripe_event(event_type: str = "payment_intent.succeeded", object_id: str = "pi_1", **extra: Any) -> bytes:
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": {"id": object_id, "object": event_type.split(".")[0], **extra}},
    }
    return json.dumps(event).encode()


def stripe_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return stripe_signature_headers(body, secret)


class Collector:
    def __init__(self) -> None:
        self.received: list[Message] = []

    async def __call__(self, message: Message) -> Mapping[str, Any] | None:
        self.received.append(message)
        return None


class DownBroker(InMemoryBroker):
    async def send(self, queue: str, message: Message) -> None:
        raise BrokerUnavailable("down")


class DownStore(InMemoryEventStore):
    async def append(self, stream: str, events: Sequence[NewEvent], expected_version: int) -> int:
        raise EventStoreUnavailable("down")


async def client_for(store: InMemoryEventStore, broker: Broker, **overrides: Any) -> httpx.AsyncClient:
    app = create_app(settings(**overrides), store, broker, {})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")


@pytest.fixture
async def store() -> AsyncIterator[InMemoryEventStore]:
    events = InMemoryEventStore()
    yield events
    await events.close()


async def settle(collector: Collector, count: int) -> None:
    """Until `count` messages have arrived or WAIT_S has passed (the test's assertion then says what is missing)."""
    deadline = time.monotonic() + WAIT_S
    while len(collector.received) < count and time.monotonic() < deadline:  # noqa: ASYNC110 - a task delivers them
        await asyncio.sleep(0.01)


async def test_a_valid_event_is_recorded_once_and_forwarded(store: InMemoryEventStore) -> None:
    broker = InMemoryBroker()
    transactions = Collector()
    await broker.consume(TRANSACTIONS_QUEUE, transactions)
    body = stripe_event()
    async with await client_for(store, broker) as client:
        first = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
        second = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    assert (second.status_code, second.json()) == (200, {"received": True, "duplicate": True})
    event_id = json.loads(body)["id"]
    recorded = await store.read(f"webhook-stripe-{event_id}")
    assert [e.type for e in recorded] == ["WebhookReceived", "WebhookForwarded"]
    assert recorded[0].data["payload"] == json.loads(body)
    assert recorded[0].data["headers"]["stripe-signature"].startswith("t=")
    await settle(transactions, 1)
    assert len(transactions.received) == 1
    command = transactions.received[0].body
    assert command["type"] == "apply_provider_event"
    assert command["payload"]["event_id"] == event_id
    assert command["payload"]["object_id"] == "pi_1"
    await broker.close()


async def test_subscription_events_go_to_billing(store: InMemoryEventStore) -> None:
    broker = InMemoryBroker()
    billing = Collector()
    await broker.consume(BILLING_QUEUE, billing)
    body = stripe_event("customer.subscription.updated", "sub_1", status="active")
    async with await client_for(store, broker) as client:
        response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    await settle(billing, 1)
    assert billing.received[0].body["payload"]["object"]["status"] == "active"
    await broker.close()


async def test_an_unknown_event_type_is_recorded_and_not_forwarded(store: InMemoryEventStore) -> None:
    broker = InMemoryBroker()
    body = stripe_event("balance.available", "bal_1")
    async with await client_for(store, broker) as client:
        response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert response.json() == {"received": True, "duplicate": False}
    recorded = await store.read(f"webhook-stripe-{json.loads(body)['id']}")
    assert [e.type for e in recorded] == ["WebhookReceived"]
    sweep = ForwardingSweep(store, WebhookForwarder(store, broker), grace_s=0, interval_s=1)
    assert await sweep.sweep_once() == 1  # counted as done: there is nothing to send
    assert not sweep.pending
    await broker.close()


async def test_a_failed_send_is_forwarded_by_the_sweep(store: InMemoryEventStore) -> None:
    body = stripe_event()
    async with await client_for(store, DownBroker()) as client:
        response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert response.json() == {"received": True, "duplicate": False}
    stream = f"webhook-stripe-{json.loads(body)['id']}"
    assert [e.type for e in await store.read(stream)] == ["WebhookReceived"]

    broker = InMemoryBroker()
    transactions = Collector()
    await broker.consume(TRANSACTIONS_QUEUE, transactions)
    sweep = ForwardingSweep(store, WebhookForwarder(store, broker), grace_s=0, interval_s=1)
    assert await sweep.sweep_once() == 1
    assert await sweep.sweep_once() == 0  # marked: not sent again
    await settle(transactions, 1)
    assert [m.body["payload"]["webhook_stream"] for m in transactions.received] == [stream]
    assert [e.type for e in await store.read(stream)] == ["WebhookReceived", "WebhookForwarded"]
    await broker.close()


async def test_a_running_sweep_forwards_what_was_recorded_after_its_first_round_without_reading_it_back(
    store: InMemoryEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = InMemoryBroker()
    transactions = Collector()
    await broker.consume(TRANSACTIONS_QUEUE, transactions)
    sweep = ForwardingSweep(store, WebhookForwarder(store, broker), grace_s=0, interval_s=0.02)
    reads_back: list[int] = []
    first_read = asyncio.Event()
    read_all = store.read_all

    def counted_read_all(from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        reads_back.append(from_position)
        first_read.set()
        return read_all(from_position)

    monkeypatch.setattr(store, "read_all", counted_read_all)
    sweep.start()
    try:
        async with asyncio.timeout(5):
            await first_read.wait()
        body = stripe_event()
        async with await client_for(store, DownBroker()) as client:  # recorded, its own send failed
            await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
        await settle(transactions, 1)
    finally:
        await sweep.stop()
        await broker.close()
    assert transactions.received[0].body["payload"]["webhook_stream"] == f"webhook-stripe-{json.loads(body)['id']}"
    assert reads_back == [0]


class GatedBroker(InMemoryBroker):
    """`send` takes the message once `gate` is opened (never, unless a test opens it)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    async def send(self, queue: str, message: Message) -> None:
        await self.gate.passing()
        await super().send(queue, message)


async def _received_webhook(store: InMemoryEventStore) -> dict[str, Any]:
    body = stripe_event()
    async with await client_for(store, DownBroker()) as client:
        await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    [received] = await store.read(f"webhook-stripe-{json.loads(body)['id']}")
    return dict(received.data)


async def test_a_send_that_hangs_is_given_up_after_the_send_timeout(store: InMemoryEventStore) -> None:
    received = await _received_webhook(store)
    forwarder = WebhookForwarder(store, GatedBroker(), send_timeout_s=0.05)
    async with asyncio.timeout(5):
        assert await forwarder.forward(received) is False  # not marked: the sweep sends it again


async def test_a_cancel_that_arrives_as_the_send_completes_is_not_lost(store: InMemoryEventStore) -> None:
    """Stopping the sweep (or the app) as a send completes must still stop it: on Python 3.11,
    asyncio.wait_for returned the send's result and dropped the cancel."""
    received = await _received_webhook(store)
    broker = GatedBroker()
    forwarding = asyncio.create_task(WebhookForwarder(store, broker).forward(received))
    await cancel_as_the_gate_opens(forwarding, broker.gate)
    with pytest.raises(asyncio.CancelledError):
        await forwarding
    await broker.close()


async def test_a_sweep_before_an_in_memory_broker_sends_again_what_an_earlier_process_forwarded_but_never_applied(
    store: InMemoryEventStore,
) -> None:
    """An in-memory broker's queues died with the process that forwarded into them: only `WebhookApplied` proves
    an event recorded before this process started was handed over. One sent into this process's own queues is
    not sent again."""
    lost, applied = stripe_event(), stripe_event()
    async with await client_for(store, InMemoryBroker()) as client:  # forwarded, then the process "died"
        for body in (lost, applied):
            await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    applied_stream = f"webhook-stripe-{json.loads(applied)['id']}"
    await mark_applied(store, {"webhook_stream": applied_stream}, {"outcome": "PaymentCaptured"})

    broker = InMemoryBroker()
    transactions = Collector()
    await broker.consume(TRANSACTIONS_QUEUE, transactions)
    sweep = ForwardingSweep(store, WebhookForwarder(store, broker), grace_s=0, interval_s=1, forwarded_lasts=False)
    assert await sweep.sweep_once() == 1
    assert await sweep.sweep_once() == 0  # sent into this process's queues: not sent again
    await settle(transactions, 1)
    assert [m.body["payload"]["event_id"] for m in transactions.received] == [json.loads(lost)["id"]]
    await broker.close()

    durable = ForwardingSweep(store, WebhookForwarder(store, InMemoryBroker()), grace_s=0, interval_s=1)
    assert await durable.sweep_once() == 0  # RabbitMQ keeps what was forwarded until the worker acks it


async def test_the_sweep_waits_for_the_grace_period(store: InMemoryEventStore) -> None:
    body = stripe_event()
    async with await client_for(store, DownBroker()) as client:
        await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    sweep = ForwardingSweep(store, WebhookForwarder(store, InMemoryBroker()), grace_s=3600, interval_s=1)
    assert await sweep.sweep_once() == 0
    assert len(sweep.pending) == 1


async def test_a_store_failure_is_503_so_the_provider_retries() -> None:
    body = stripe_event()
    async with await client_for(DownStore(), InMemoryBroker()) as client:
        response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert response.status_code == 503
    assert "Retry-After" in response.headers


async def test_a_missing_secret_is_503_for_that_provider_only(store: InMemoryEventStore) -> None:
    body = stripe_event()
    async with await client_for(store, InMemoryBroker(), stripe_webhook_secret="") as client:
        response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
        forged = {"X-ANET-Signature": "sha512=00"}
        authnet = await client.post("/api/v1/webhooks/authnet", content=b"{}", headers=forged)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "provider_unavailable"
    assert SECRET not in response.text
    assert authnet.status_code == 400


async def test_a_forgery_records_nothing(store: InMemoryEventStore) -> None:
    body = stripe_event()
    async with await client_for(store, InMemoryBroker()) as client:
        response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body, "whsec_x"))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_signature",
        "message": "No signature matches the payload.",
    }
    assert [e async for e in store.read_all()] == []


async def test_the_rotated_secret_verifies_too(store: InMemoryEventStore) -> None:
    body = stripe_event()
    async with await client_for(store, InMemoryBroker()) as client:
        response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body, "whsec_old"))
    assert response.status_code == 200


async def test_over_the_rate_limit_is_429_with_retry_after(store: InMemoryEventStore) -> None:
    async with await client_for(store, InMemoryBroker(), rate_limit_webhook="2/minute") as client:
        statuses = []
        for _ in range(3):
            body = stripe_event()
            response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
            statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_an_oversize_body_is_413(store: InMemoryEventStore) -> None:
    body = b'{"id": "evt_big", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    async with await client_for(store, InMemoryBroker()) as client:
        response = await client.post("/api/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert response.status_code == 413
    assert [e async for e in store.read_all()] == []


def test_settings_read_a_comma_separated_secret_list() -> None:
    assert settings(stripe_webhook_secret=" whsec_a ,whsec_b,, ").stripe_secrets == ["whsec_a", "whsec_b"]
    assert settings(stripe_webhook_secret="").stripe_secrets == []
    assert WebhookSettings().port == 8001
