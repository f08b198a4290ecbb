"""OpenTelemetry metrics: the meter provider a process installs, and the instruments the platform records.

Recorded through the OpenTelemetry metrics API (no-ops unless `configure_metrics` installs the SDK provider, which it
does only when a reader is configured):
- `http.server.request.duration` (count and latency by route, method and status): FastAPI's own telemetry, at
  the gateway and webhook-ingest;
- `payments.provider.duration` (seconds, by provider, operation and outcome): every provider call;
- `payments.queue.redeliveries` (by queue): deliveries of a message that an earlier delivery did not finish;
- `payments.recovery.failures` (by queue): commands a worker's recovery could not run again (an exception other
  than an API error; its log line names the command), each tried again at the next sweep;
- `payments.breaker.state` (0 closed, 1 half-open, 2 open, by provider): from `observe_breakers`.

The reader comes only from `OTEL_METRICS_EXPORTER`: none by default; `otlp` (the default when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set) if `opentelemetry-exporter-otlp` is installed; `prometheus` serves a scrape
endpoint on `OTEL_EXPORTER_PROMETHEUS_HOST`:`OTEL_EXPORTER_PROMETHEUS_PORT` (default 0.0.0.0:9464) if
`opentelemetry-exporter-prometheus` is installed; `console`. A requested exporter that is not installed is
one warning, and metrics are then not exported.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

logger = logging.getLogger(__name__)

METER_NAME: Final = "payments"
BREAKER_STATES: Final = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}
_configured = False


def configure_metrics(resource: Resource, extra_reader: MetricReader | None = None) -> None:
    """Install the SDK meter provider once per process (later calls do nothing)."""
    global _configured
    if _configured:
        return
    _configured = True
    readers = [reader for reader in (reader_from_environment(), extra_reader) if reader is not None]
    if not readers:
        return  # nothing would ever read a measurement: the API's no-op instruments record nothing
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def reader_from_environment() -> MetricReader | None:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    names = [n.strip().lower() for n in os.environ.get("OTEL_METRICS_EXPORTER", "").split(",") if n.strip()]
    name = names[0] if names else ("otlp" if endpoint else "none")
    if name == "none":
        return None
    if name == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if name == "otlp":
        module = _optional("opentelemetry.exporter.otlp.proto.http.metric_exporter", "opentelemetry-exporter-otlp")
        return PeriodicExportingMetricReader(module.OTLPMetricExporter()) if module is not None else None
    if name == "prometheus":
        return _prometheus_reader()
    logger.warning("OTEL_METRICS_EXPORTER=%s is not supported (otlp, prometheus, console, none)", name)
    return None


def _prometheus_reader() -> MetricReader | None:
    module = _optional("opentelemetry.exporter.prometheus", "opentelemetry-exporter-prometheus")
    client = _optional("prometheus_client", "prometheus-client")
    if module is None or client is None:
        return None
    host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0")
    port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
    client.start_http_server(port=port, addr=host)
    logger.info("prometheus scrape endpoint listening", extra={"host": host, "port": port})
    reader: MetricReader = module.PrometheusMetricReader()
    return reader


def _optional(module_name: str, package: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError:
        logger.warning("metrics export needs %s (pip install %s): metrics are not exported", module_name, package)
        return None


def _meter() -> metrics.Meter:
    return metrics.get_meter(METER_NAME)


_provider_duration = _meter().create_histogram(
    "payments.provider.duration", unit="s", description="Provider calls, by provider, operation and outcome"
)
_redeliveries = _meter().create_counter(
    "payments.queue.redeliveries", unit="{delivery}", description="Deliveries of a message not finished before"
)

_recovery_failures = _meter().create_counter(
    "payments.recovery.failures", unit="{command}", description="Commands recovery failed to run again"
)


def record_provider_call(provider: str, operation: str, outcome: str, seconds: float) -> None:
    attributes = {"payments.provider": provider, "payments.provider.operation": operation, "outcome": outcome}
    _provider_duration.record(seconds, attributes)


def record_redelivery(queue: str) -> None:
    _redeliveries.add(1, {"messaging.destination.name": queue})


def record_recovery_failure(queue: str) -> None:
    _recovery_failures.add(1, {"messaging.destination.name": queue})


Breakers = Callable[[], Mapping[str, Mapping[str, Any]]]  # a worker's `breakers()`: {provider: {"state": …, …}}
_breaker_sources: list[tuple[str, Breakers]] = []


def observe_breakers(worker: str, breakers: Breakers) -> None:
    """Report the state of each provider's breaker in `worker` ("closed" | "half-open" | "open"); every worker in the
    process adds its own source to the one gauge (each keeps its own breakers)."""
    if not _breaker_sources:
        _meter().create_observable_gauge(
            "payments.breaker.state", callbacks=[_observe_breakers], description="0 closed, 1 half-open, 2 open"
        )
    _breaker_sources.append((worker, breakers))


def _observe_breakers(_: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(
            BREAKER_STATES.get(str(breaker["state"]), -1), {"payments.provider": provider, "payments.worker": worker}
        )
        for worker, breakers in _breaker_sources
        for provider, breaker in breakers().items()
    ]
