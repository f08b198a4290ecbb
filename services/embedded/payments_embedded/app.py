"""The one-process composition (embedded mode): one event store, one broker, the workers and every HTTP route
in one FastAPI app. The only place that wires several services together; tests build the same system.

Workers start in `_start_workers` (transactions, billing); routes beyond the gateway's are added in
`_mount_routes` (the provider webhooks).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from payments_billing.main import start_billing
from payments_gateway.app import create_app
from payments_shared.broker.factory import open_broker
from payments_shared.broker.port import Broker
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import EventStore
from payments_shared.providers.port import PaymentProvider
from payments_shared.providers.registry import build_providers, close_providers
from payments_transactions.main import start_transactions
from payments_webhook_ingest.app import mount_webhooks

from payments_embedded.settings import EmbeddedSettings

logger = logging.getLogger(__name__)


@dataclass
class EmbeddedSystem:
    app: FastAPI
    store: EventStore
    broker: Broker
    providers: Mapping[str, PaymentProvider]
    workers: list[Any]

    async def close(self) -> None:
        for worker in reversed(self.workers):
            await _stop(worker)
        await close_providers(self.providers)
        await self.broker.close()
        await self.store.close()


async def _stop(worker: Any) -> None:
    for name in ("stop", "close", "aclose"):
        stop = getattr(worker, name, None)
        if stop is not None:
            with contextlib.suppress(Exception):
                await stop()
            return


async def _start_workers(
    settings: EmbeddedSettings, broker: Broker, store: EventStore, providers: Mapping[str, PaymentProvider]
) -> list[Any]:
    # Re-drives every outcome-less transaction before it returns (no other worker can hold one in this mode),
    # so nothing is served before recovery.
    transactions = await start_transactions(broker, store, providers, settings.transactions, recover_min_age_s=0)
    billing = await start_billing(broker, store, providers, settings.transactions, recover_min_age_s=0)
    return [transactions, billing]


def _mount_routes(app: FastAPI, settings: EmbeddedSettings, store: EventStore, broker: Broker) -> list[Any]:
    """Routes beyond the gateway's own (transactions, customers, subscriptions): the provider webhooks. Returns
    what must be stopped on shutdown."""
    return [mount_webhooks(app, store, broker, settings.webhooks)]


async def start_system(settings: EmbeddedSettings) -> EmbeddedSystem:
    settings.transactions.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_event_store(settings.gateway.eventstore_uri)
    broker = await open_broker(settings.gateway.broker_url)
    providers = build_providers(settings.transactions, settings.transactions.data_dir, settings.sandbox)
    try:
        workers = await _start_workers(settings, broker, store, providers)
    except BaseException:
        await close_providers(providers)
        await broker.close()
        await store.close()
        raise
    app = create_app(settings.gateway, broker, {"broker": broker.ping, "eventstore": store.ping})
    workers += _mount_routes(app, settings, store, broker)
    return EmbeddedSystem(app=app, store=store, broker=broker, providers=providers, workers=workers)
