"""`python -m payments_billing`: the billing worker in services mode, with only /healthz and /readyz on $PORT."""

from __future__ import annotations

import asyncio
import logging
import sys

from fastapi import FastAPI
from payments_shared.broker.factory import open_broker
from payments_shared.eventstore.factory import open_event_store
from payments_shared.http.health import health_router
from payments_shared.http.serve import serve
from payments_shared.logging import configure, register_secret
from payments_shared.providers.registry import build_providers, close_providers
from payments_shared.providers.sandbox import SandboxSettings
from payments_shared.settings import ConfigError, load

from payments_billing.main import start_billing
from payments_billing.settings import BillingSettings

logger = logging.getLogger("payments_billing")


async def run(settings: BillingSettings, sandbox: SandboxSettings) -> None:
    store = open_event_store(settings.eventstore_uri)
    providers = build_providers(settings, settings.data_dir, sandbox)
    broker = await open_broker(settings.broker_url)
    try:
        await start_billing(broker, store, providers, settings)
        app = FastAPI(title="Payments billing worker", docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(health_router({"broker": broker.ping, "eventstore": store.ping}))
        logger.info("billing worker started", extra={"port": settings.port})
        await serve(app, settings.port)
    finally:
        logger.info("billing worker stopping")
        await broker.close()
        await close_providers(providers)
        await store.close()


def main() -> None:
    try:
        settings = load(BillingSettings)
        sandbox = load(SandboxSettings)
    except ConfigError as error:
        print(error.line, file=sys.stderr)
        raise SystemExit(2) from None
    configure(settings.log_level)
    for secret in (settings.stripe_api_key, settings.authnet_transaction_key):
        register_secret(secret)
    asyncio.run(run(settings, sandbox))


if __name__ == "__main__":
    main()
