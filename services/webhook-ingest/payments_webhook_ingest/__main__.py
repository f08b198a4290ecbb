"""webhook-ingest as its own process (services mode): `python -m payments_webhook_ingest`, on $PORT (8001)."""

from __future__ import annotations

import logging

from payments_shared.broker.factory import open_broker
from payments_shared.eventstore.factory import open_event_store
from payments_shared.http.serve import serve
from payments_shared.process import bootstrap, run_or_exit, settings_or_exit

from payments_webhook_ingest.app import create_app
from payments_webhook_ingest.settings import WebhookSettings

logger = logging.getLogger("payments_webhook_ingest")


async def run(settings: WebhookSettings) -> None:
    store = open_event_store(settings.eventstore_uri)  # first: a bad data directory stops it before the broker
    broker = await open_broker(settings.broker_url)
    try:
        app = create_app(settings, store, broker, {"broker": broker.ping, "eventstore": store.ping})
        unconfigured = [
            variable
            for variable, value in (
                ("STRIPE_WEBHOOK_SECRET", settings.stripe_secrets),
                ("AUTHNET_SIGNATURE_KEY", settings.authnet_signature_key),
            )
            if not value
        ]
        for variable in unconfigured:
            logger.warning("%s is not set: that provider's webhooks are refused with 503", variable)
        logger.info("webhook-ingest listening", extra={"port": settings.port})
        await serve(app, settings)
    finally:
        await broker.close()
        await store.close()


def main() -> None:
    settings = settings_or_exit(WebhookSettings, services_mode=True)
    bootstrap("payments-webhook-ingest", settings.log_level, (*settings.stripe_secrets, settings.authnet_signature_key))
    run_or_exit(run(settings))


if __name__ == "__main__":
    main()
