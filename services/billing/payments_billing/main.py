"""Composition: the billing worker on a broker and an event store, with the providers the registry built.
Used by the billing process (`__main__`) and by the embedded runner alike."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from payments_shared.broker.expiry import shedding_expired
from payments_shared.broker.port import Broker
from payments_shared.broker.store_failures import pausing_on_store_failure
from payments_shared.eventstore.port import EventStore
from payments_shared.idempotency import IdempotencyGuard
from payments_shared.messages import BILLING_QUEUE
from payments_shared.metrics import observe_breakers
from payments_shared.projections.host import host_lists
from payments_shared.providers.registry import with_resilience
from payments_shared.settings import ProviderSettings

from payments_billing import projections
from payments_billing.context import BillingContext
from payments_billing.providers import billing_providers
from payments_billing.streams import Streams
from payments_billing.worker import BillingWorker

logger = logging.getLogger(__name__)


class BillingConfig(Protocol):
    """What the worker reads from settings (`BillingSettings`, or the embedded runner's own settings): besides
    these, every `ProviderSettings` field (retries and circuit breakers)."""

    @property
    def payments_default_provider(self) -> str: ...

    @property
    def in_flight_window_s(self) -> float: ...

    @property
    def data_dir(self) -> Path: ...  # where the list read models live

    @property
    def recovery_min_age_s(self) -> float: ...

    @property
    def recovery_interval_s(self) -> float: ...


def build_worker(store: EventStore, providers: Mapping[str, Any], settings: BillingConfig) -> BillingWorker:
    if not isinstance(settings, ProviderSettings):
        raise TypeError("the billing worker's settings must include ProviderSettings (retries, breakers)")
    # One breaker and retry policy per provider in this worker, as the transactions worker has its own.
    resilient = with_resilience(billing_providers(providers), settings)
    context = BillingContext(Streams(store), resilient, settings.payments_default_provider, settings.in_flight_window_s)
    guard = IdempotencyGuard(store, settings.in_flight_window_s)
    return BillingWorker(context, guard, settings.recovery_min_age_s, settings.recovery_interval_s)


async def start_billing(
    broker: Broker,
    store: EventStore,
    providers: Mapping[str, Any],
    settings: BillingConfig,
    *,
    recover_min_age_s: float | None = None,
) -> BillingWorker:
    """Finish the changes a previous run accepted and did not answer, then consume `BILLING_QUEUE` and sweep every
    RECOVERY_INTERVAL_S; returns once the consumer is registered (closing the broker stops it, `worker.stop()` the
    sweep). Embedded mode passes `recover_min_age_s=0` (no other worker can be running); services mode keeps the
    in-flight window, leaving younger ones to their worker."""
    worker = build_worker(store, providers, settings)
    observe_breakers("billing", worker.breakers)
    min_age_s = settings.in_flight_window_s if recover_min_age_s is None else recover_min_age_s
    recovered = await worker.recover(min_age_s)
    # The customers and subscriptions lists: projected here, answered on this queue.
    lists = await host_lists(
        store, settings.data_dir, [projections.CUSTOMERS, projections.SUBSCRIPTIONS], projections.LISTS
    )
    # A store failure is redelivered after a pause (payments_shared.broker.store_failures), not at once.
    await broker.consume(BILLING_QUEUE, shedding_expired(pausing_on_store_failure(lists.serving(worker.handle))))
    worker.start_sweeping()
    logger.info("billing worker consuming", extra={"queue": BILLING_QUEUE, "recovered": recovered})
    return worker
