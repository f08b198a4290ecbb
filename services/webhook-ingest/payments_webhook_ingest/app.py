"""webhook-ingest's FastAPI app (services mode) and `mount_webhooks`, which adds the same routes to another app
(the embedded composition)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from payments_shared.broker.port import Broker
from payments_shared.eventstore.port import EventStore
from payments_shared.http.body_limit import BodySizeLimit
from payments_shared.http.correlation import CorrelationIdMiddleware
from payments_shared.http.errors import install_error_handlers
from payments_shared.http.head import HeadAsGet
from payments_shared.http.health import ReadinessCheck, health_router
from payments_shared.http.server_span import ServerSpanContext
from payments_shared.settings import load
from payments_shared.tracing import fastapi_telemetry

from payments_webhook_ingest.ingest import WebhookIngest
from payments_webhook_ingest.router import router
from payments_webhook_ingest.settings import WebhookSettings


def mount_webhooks(
    app: FastAPI, store: EventStore, broker: Broker, settings: WebhookSettings | None = None
) -> WebhookIngest:
    """Include the webhook routes into `app` and start the forwarding sweep; `stop()` the result on shutdown.
    Without `settings` they are read from the environment (ConfigError on a wrong value)."""
    ingest = _install(app, WebhookIngest.build(settings or load(WebhookSettings), store, broker))
    ingest.start()
    return ingest


def _install(app: FastAPI, ingest: WebhookIngest) -> WebhookIngest:
    app.state.webhook_ingest = ingest
    app.include_router(router)
    return ingest


def create_app(
    settings: WebhookSettings, store: EventStore, broker: Broker, readiness_checks: Mapping[str, ReadinessCheck]
) -> FastAPI:
    ingest = WebhookIngest.build(settings, store, broker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ingest.start()
        try:
            yield
        finally:
            await ingest.stop()

    app = FastAPI(
        title="Payments webhook ingest",
        version="1.0.0",
        docs_url="/docs",
        openapi_url="/openapi.json",
        lifespan=lifespan,
        telemetry=fastapi_telemetry(),
        redirect_slashes=False,  # a provider does not follow redirects: `…/stripe/` is 404, never a 307
    )
    install_error_handlers(app)
    app.include_router(health_router(readiness_checks))
    _install(app, ingest)
    # Added last = outermost: every request gets its trace context, a correlation id, then its body is size-limited;
    # innermost, a HEAD is routed as a GET.
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(CorrelationIdMiddleware)
    app.add_middleware(ServerSpanContext)
    return app
