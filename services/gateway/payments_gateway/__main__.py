"""The gateway as its own process (services mode): `python -m payments_gateway`."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from payments_shared.broker.factory import open_broker
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import EventStore, EventStoreUnavailable
from payments_shared.http.serve import serve
from payments_shared.process import bootstrap, run_or_exit, settings_or_exit

from payments_gateway.app import create_app
from payments_gateway.settings import GatewaySettings

logger = logging.getLogger("payments_gateway")
STORE_CHECK_S: Final = 10.0


async def run(settings: GatewaySettings) -> None:
    # The gateway holds no state; it opens the store only so that /readyz checks it, as API.md asks. The store
    # first: an unusable data directory then stops it before a broker connection is left open.
    store = open_event_store(settings.eventstore_uri)
    try:
        await _reach(store)
        broker = await open_broker(settings.broker_url)
        try:
            app = create_app(settings, broker, {"broker": broker.ping, "eventstore": store.ping})
            logger.info("gateway listening", extra={"port": settings.port})
            await serve(app, settings, longest_request_s=settings.rpc_timeout_s)
        finally:
            await broker.close()
    finally:
        await store.close()


async def _reach(store: EventStore) -> None:
    """A store out of reach stops the gateway at start-up, as it stops the workers (a KurrentDB client connects
    only when first used: the gateway would otherwise start and stay unready)."""
    try:
        async with asyncio.timeout(STORE_CHECK_S):
            await store.ping()
    except TimeoutError:
        raise EventStoreUnavailable(f"the event store did not answer within {STORE_CHECK_S:g} s") from None


def main() -> None:
    settings = settings_or_exit(GatewaySettings, services_mode=True)
    bootstrap("payments-gateway", settings.log_level, (settings.payments_jwt_secret,))
    run_or_exit(run(settings))


if __name__ == "__main__":
    main()
