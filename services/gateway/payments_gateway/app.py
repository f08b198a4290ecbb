"""The gateway's FastAPI app: health, the API routes, API.md's errors everywhere, body limit, correlation ids.

`create_app` is used both by the gateway process (services mode) and by the embedded runner, which may
include more routers (billing, webhooks) into the app it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import APIRouter, FastAPI
from payments_shared.broker.port import Broker
from payments_shared.http.body_limit import BodySizeLimit
from payments_shared.http.correlation import CorrelationIdMiddleware
from payments_shared.http.errors import install_error_handlers
from payments_shared.http.head import HeadAsGet
from payments_shared.http.health import ReadinessCheck, health_router
from payments_shared.http.server_span import ServerSpanContext
from payments_shared.tracing import fastapi_telemetry

from payments_gateway.context import GatewayContext
from payments_gateway.openapi_docs import install_openapi
from payments_gateway.routes import customers, lists, subscriptions, transactions
from payments_gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)


def warn_if_dev_secret(settings: GatewaySettings) -> None:
    if settings.using_development_secret:
        logger.warning(
            "PAYMENTS_JWT_SECRET is not set: using the built-in DEVELOPMENT secret. Anyone can mint tokens. "
            "Never run like this outside a laptop."
        )


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """The routers' routes, in order, straight into the app's own router. `include_router` would keep each router
    as a unit that FastAPI (0.16x) matches through a wrapper on every request passing it (~7 µs per router before
    the one that matches); the routes themselves are complete (prefix, tags, dependencies) either way."""
    for router in routers:
        app.router.routes.extend(router.routes)


def create_app(settings: GatewaySettings, broker: Broker, readiness_checks: Mapping[str, ReadinessCheck]) -> FastAPI:
    warn_if_dev_secret(settings)
    app = FastAPI(
        title="Payments API",
        version="1.0.0",
        docs_url="/docs",
        openapi_url="/openapi.json",
        telemetry=fastapi_telemetry(),
        redirect_slashes=False,  # `…/charge/` is 404 as at Stripe, never a redirect a client follows with its token
    )
    app.state.gateway = GatewayContext.build(settings, broker)
    install_error_handlers(app)
    install_openapi(app)
    add_routes(
        app,
        health_router(readiness_checks),
        lists.router,  # before the /{id} routes of the same prefixes
        transactions.router,
        customers.router,
        subscriptions.router,
    )
    # Added last = outermost: every request gets its trace context, a correlation id, then its body is size-limited;
    # innermost, a HEAD is routed as a GET.
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(CorrelationIdMiddleware)
    app.add_middleware(ServerSpanContext)
    return app
