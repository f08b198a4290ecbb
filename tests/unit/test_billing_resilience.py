"""The billing worker's provider calls go through the same circuit breaker and retries as the transactions
worker's: a provider that keeps failing is retried, then refused with 503 without being called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from payments_billing.main import build_worker
from payments_billing.settings import BillingSettings
from payments_shared import ids
from payments_shared.broker.port import Message
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.messages import Command
from payments_shared.providers.port import CustomerRequest, Outcome, ProviderResult


class UnreachableBilling:
    """A billing provider whose every call fails the way a network outage does (the thing under test is the
    worker's resilience layer, not a provider)."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        self.calls += 1
        return ProviderResult(Outcome.RETRYABLE, message="connection reset")

    async def update_customer(self, *_: Any) -> ProviderResult:
        raise AssertionError("not used")

    delete_customer = create_subscription = update_subscription = cancel_subscription = update_customer


async def _create(worker: Any, key: str) -> dict[str, Any]:
    command_id = ids.command_id("ws", key)
    payload = {"customer_id": ids.derived_id("cus", command_id), "email": "a@example.com", "provider": "flaky"}
    command = Command(
        type="create_customer",
        workspace="ws",
        actor="u",
        command_id=command_id,
        idempotency_key=key,
        fingerprint=ids.fingerprint("create_customer", payload),
        payload=payload,
    )
    return dict(await worker.handle(Message(body=command.model_dump())))


async def test_failures_are_retried_then_the_breaker_refuses_without_calling(tmp_path: Path) -> None:
    provider = UnreachableBilling()
    settings = BillingSettings(
        data_dir=tmp_path,
        provider_retry_attempts=2,
        provider_retry_base_s=0,
        provider_retry_cap_s=0,
        breaker_fail_max=4,
        breaker_reset_timeout_s=60,
    )
    worker = build_worker(InMemoryEventStore(), {"flaky": provider}, settings)

    first = await _create(worker, "k1")
    assert first["status"] == 503 and first["body"]["error"]["type"] == "provider_unavailable"
    assert provider.calls == 2  # retried once

    await _create(worker, "k2")  # the fourth failure opens the breaker
    calls_when_open = provider.calls
    refused = await _create(worker, "k3")
    assert refused["status"] == 503
    assert "Retry-After" in refused["headers"]
    assert provider.calls == calls_when_open  # not called while open
