"""What every service process does before and around its own work: settings or a one-line exit, JSON logs,
telemetry, secrets registered for scrubbing, and — for workers — the store, broker, providers and a health-only
HTTP server, closed in order on the way out."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Final, TypeVar

from fastapi import FastAPI
from pydantic_settings import BaseSettings

from payments_shared.broker.factory import open_broker
from payments_shared.broker.port import Broker, BrokerError
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import EventStore, EventStoreError
from payments_shared.http.head import HeadAsGet
from payments_shared.http.health import health_router
from payments_shared.http.serve import serve
from payments_shared.logging import configure, register_secret
from payments_shared.providers.port import PaymentProvider
from payments_shared.providers.registry import build_providers, close_providers
from payments_shared.providers.sandbox import SandboxSettings
from payments_shared.settings import ConfigError, load
from payments_shared.tracing import configure_telemetry

S = TypeVar("S", bound=BaseSettings)
logger = logging.getLogger(__name__)


# What a process of services mode cannot go without. BROKER_URL's default, `memory://`, is a queue of the process's
# own that no other process reads: a gateway would accept commands that no worker ever sees.
SERVICES_REQUIRED: Final = {"BROKER_URL": "amqp://user:pass@host:5672/vhost"}


def settings_or_exit(cls: type[S], *, services_mode: bool = False) -> S:
    """The settings, or one line on stderr naming the wrong (or, in services mode, missing) variable and exit
    status 2."""
    try:
        if services_mode:
            _require_set(SERVICES_REQUIRED)
        settings = load(cls)
        if services_mode and getattr(settings, "broker_url", None) == "memory://":
            raise ConfigError(
                "configuration error: BROKER_URL=memory:// is a queue of this process's own, which no other process "
                f"reads (embedded mode's): services mode needs RabbitMQ, e.g. {SERVICES_REQUIRED['BROKER_URL']}"
            )
        return settings
    except ConfigError as error:
        print(error.line, file=sys.stderr)
        raise SystemExit(2) from None


def _require_set(variables: Mapping[str, str]) -> None:
    present = {name.upper() for name in os.environ}  # settings read names in any case
    for name, example in variables.items():
        if name not in present:
            raise ConfigError(f"configuration error: {name} is required in services mode, e.g. {example}")


def run_or_exit(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(main)`; but what it needs and cannot reach — RabbitMQ, the event store, the data directory, its
    port — ends the process with one JSON log line saying so and exit status 1, not a traceback. Not retried here:
    the orchestrator restarts the process (Kubernetes, compose)."""
    try:
        asyncio.run(main)
    except (BrokerError, EventStoreError, OSError) as error:
        logger.error("cannot start", extra={"reason": f"{type(error).__name__}: {error}"})
        raise SystemExit(1) from None


def bootstrap(service: str, log_level: str, secrets: Iterable[str | None]) -> None:
    configure(log_level)
    configure_telemetry(service)
    for secret in secrets:
        register_secret(secret)


StartWorker = Callable[[Broker, EventStore, dict[str, PaymentProvider]], Awaitable[Any]]


def _breakers_route(app: FastAPI, worker: Any) -> None:
    @app.get("/breakers")
    async def breakers() -> dict[str, dict[str, object]]:
        """Each provider's circuit breaker in this worker (state, failures, seconds to half-open)."""
        states: dict[str, dict[str, object]] = worker.breakers()
        return states


async def run_worker(
    name: str,
    settings: Any,
    start: StartWorker,
) -> None:
    """Open the store, providers and broker, start the worker, serve /healthz and /readyz (and /breakers, when the
    worker has circuit breakers) on $PORT until SIGTERM/SIGINT, then stop the worker (`stop()`, when it has one)
    and close everything."""
    sandbox = settings_or_exit(SandboxSettings)
    store = open_event_store(settings.eventstore_uri)
    providers = build_providers(settings, settings.data_dir, sandbox)
    broker = await open_broker(settings.broker_url)
    worker: Any = None
    try:
        worker = await start(broker, store, providers)
        app = FastAPI(title=name, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
        app.include_router(health_router({"broker": broker.ping, "eventstore": store.ping}))
        if hasattr(worker, "breakers"):
            _breakers_route(app, worker)
        app.add_middleware(HeadAsGet)
        logger.info("worker started", extra={"worker": name, "port": settings.port})
        await serve(app, settings)
    finally:
        logger.info("worker stopping", extra={"worker": name})
        if worker is not None and hasattr(worker, "stop"):
            await worker.stop()  # its background sweep, before what it uses is closed
        await broker.close()
        await close_providers(providers)
        await store.close()
