"""What one webhook delivery goes through: rate limit, configured secret, body limit, signature, provider JSON,
record once, forward. Built once per app (`WebhookIngest.build`); the routes call `receive`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from limits import RateLimitItem
from payments_shared.broker.port import Broker
from payments_shared.eventstore.port import EventStore
from payments_shared.ratelimit import RateLimiter, parse_limit

from payments_webhook_ingest import authnet, stripe
from payments_webhook_ingest.body import read_body
from payments_webhook_ingest.event import ProviderEvent, webhook_not_configured
from payments_webhook_ingest.forwarding import WebhookForwarder
from payments_webhook_ingest.recording import WebhookRecorder
from payments_webhook_ingest.settings import WebhookSettings
from payments_webhook_ingest.sweep import ForwardingSweep

logger = logging.getLogger(__name__)

# Headers kept with the recorded event (the signature is kept so an audit can verify it again; it is not a secret).
_RECORDED_HEADERS = (
    "content-type",
    "user-agent",
    "x-request-id",
    "x-forwarded-for",
    stripe.SIGNATURE_HEADER,
    authnet.SIGNATURE_HEADER,
)


def recorded_headers(request: Request) -> dict[str, str]:
    kept = {name: request.headers[name] for name in _RECORDED_HEADERS if name in request.headers}
    if request.client is not None:
        kept["source_address"] = request.client.host
    return kept


@dataclass
class WebhookIngest:
    settings: WebhookSettings
    limiter: RateLimiter
    budget: RateLimitItem
    recorder: WebhookRecorder
    forwarder: WebhookForwarder
    sweep: ForwardingSweep

    @classmethod
    def build(cls, settings: WebhookSettings, store: EventStore, broker: Broker) -> WebhookIngest:
        forwarder = WebhookForwarder(store, broker)
        return cls(
            settings=settings,
            limiter=RateLimiter(settings.rate_limit_storage),
            budget=parse_limit(settings.rate_limit_webhook),
            recorder=WebhookRecorder(store),
            forwarder=forwarder,
            sweep=ForwardingSweep(
                store,
                forwarder,
                settings.webhook_forward_grace_s,
                settings.webhook_sweep_interval_s,
                forwarded_lasts=broker.outlives_process,
            ),
        )

    def start(self) -> None:
        self.sweep.start()

    async def stop(self) -> None:
        await self.sweep.stop()

    async def receive_stripe(self, request: Request) -> dict[str, Any]:
        await self._spend_budget(request)
        secrets = self.settings.stripe_secrets
        if not secrets:
            raise webhook_not_configured("STRIPE_WEBHOOK_SECRET")
        body = await read_body(request)
        stripe.verify(
            body, request.headers.get(stripe.SIGNATURE_HEADER), secrets, time.time(), self.settings.webhook_tolerance_s
        )
        return await self._accept(stripe.parse(body), request)

    async def receive_authnet(self, request: Request) -> dict[str, Any]:
        await self._spend_budget(request)
        key = self.settings.authnet_signature_key
        if not key:
            raise webhook_not_configured("AUTHNET_SIGNATURE_KEY")
        body = await read_body(request)
        authnet.verify(body, request.headers.get(authnet.SIGNATURE_HEADER), key)
        return await self._accept(authnet.parse(body), request)

    async def _spend_budget(self, request: Request) -> None:
        source = request.client.host if request.client is not None else "unknown"
        await self.limiter.check(self.budget, "webhook", source)

    async def _accept(self, event: ProviderEvent, request: Request) -> dict[str, Any]:
        correlation_id = str(getattr(request.state, "correlation_id", "") or uuid.uuid4())
        received = await self.recorder.record(event, recorded_headers(request), correlation_id)
        if received is None:
            logger.info("duplicate webhook", extra=_log_fields(event))
            return {"received": True, "duplicate": True}
        logger.info("webhook recorded", extra=_log_fields(event))
        # Recorded: whatever happens now, the sweep forwards it if this send does not.
        await self.forwarder.forward(received, correlation_id)
        return {"received": True, "duplicate": False}


def _log_fields(event: ProviderEvent) -> Mapping[str, Any]:
    return {"provider": event.provider, "event_id": event.event_id, "event_type": event.type}
