"""OpenTelemetry tracing: one set-up per process, and the seams where a trace crosses a boundary.

- `configure_telemetry(service)`: the SDK tracer provider (and the meter provider: payments_shared.metrics), so
  every process makes trace ids that travel with the work. When nothing is exported (no exporter, no extra
  processor, no `OTEL_TRACES_SAMPLER`), a context-only provider (payments_shared.tracecontext) makes the same
  trace ids and `traceparent` values but records no span, and no meter provider is installed; the seams below then
  skip the tracer and its attributes, and only make the span ids that the context carries. The exporter comes only
  from the standard `OTEL_*` variables: none by default; OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
  `…_TRACES_ENDPOINT`) is set or `OTEL_TRACES_EXPORTER=otlp` (if `opentelemetry-exporter-otlp` is installed,
  else one warning); `console` prints spans. `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
  `OTEL_TRACES_SAMPLER` and `OTEL_SDK_DISABLED` work as the SDK defines them.
- HTTP: FastAPI's own telemetry (FastAPI >= 0.16x) makes a SERVER span per request, named by the route and
  continuing the caller's `traceparent`, and records `http.server.request.duration` by route and status,
  through the providers installed here. Under the context-only provider its tracing is off
  (`fastapi_telemetry`) and payments_shared.http.server_span makes that span's context instead.
- `instrument_broker`: injects `traceparent` into every message sent (PRODUCER/CLIENT span) and runs each
  handler in a CONSUMER span continuing the sender's trace; the handler sees that span's `traceparent`.
- `instrument_event_store`: a span per append; each new event without a `traceparent` in its metadata gets the
  current one, so the store's audit trail names the trace that wrote it.
- `traced_provider_call`: a span around one provider call, with its outcome and latency (also a metric).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Final, TypeVar

from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from payments_shared.broker.port import Broker, Handler, Message
from payments_shared.eventstore.port import EventStore, NewEvent
from payments_shared.metrics import configure_metrics, record_provider_call, record_redelivery
from payments_shared.tracecontext import ContextOnlyTracerProvider, Current, child_of, traceparent_of

logger = logging.getLogger(__name__)

B = TypeVar("B", bound=Broker)
R = TypeVar("R")
S = TypeVar("S", bound=EventStore)

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
TRACER_NAME: Final = "payments"
FAILED_OUTCOMES: Final = frozenset({"retryable", "unavailable", "permanent", "exception"})
_propagator = TraceContextTextMapPropagator()
_configured = False
_context_only = False  # the installed provider records no span: a span is then only its context, made here
OTLP_EXPORTERS: Final = {
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
}


# ---- set-up -------------------------------------------------------------------------------------------------


def configure_telemetry(
    service_name: str, span_processor: SpanProcessor | None = None, metric_reader: MetricReader | None = None
) -> None:
    """What every process's entrypoint calls once: tracing (here) and metrics (payments_shared.metrics). The
    extra processor/reader are for tests (in-memory) or embedding applications."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name})
    configure_tracing(resource, span_processor)
    configure_metrics(resource, metric_reader)


def configure_tracing(resource: Resource, extra_processor: SpanProcessor | None = None) -> None:
    """Install the SDK tracer provider once per process (later calls do nothing)."""
    global _configured, _context_only
    if _configured:
        return
    _configured = True
    exporter = exporter_from_environment()
    if exporter is None and extra_processor is None and not os.environ.get("OTEL_TRACES_SAMPLER"):
        # Nothing would ever read a recorded span: carry the context only (ids, flags), record nothing.
        context_only = ContextOnlyTracerProvider()
        trace.set_tracer_provider(context_only)
        _context_only = trace.get_tracer_provider() is context_only  # not if another provider was installed before
        return
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)


def exporter_from_environment() -> SpanExporter | None:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    name = names[0] if names else ("otlp" if endpoint else "none")
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        return _otlp_exporter()
    logger.warning("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console, none): spans are not exported", name)
    return None


def _otlp_exporter() -> SpanExporter | None:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    module_name = OTLP_EXPORTERS.get(protocol.strip().lower(), OTLP_EXPORTERS["http/protobuf"])
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        logger.warning(
            "OTLP trace export is configured but %s is not installed (pip install opentelemetry-exporter-otlp): "
            "spans are not exported",
            module_name,
        )
        return None
    exporter: SpanExporter = module.OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*
    return exporter


def context_only() -> bool:
    """Whether this process carries trace context without recording spans (no exporter configured)."""
    return _context_only


def fastapi_telemetry() -> TelemetryConfig:
    """FastAPI's own telemetry settings for an app built now: its tracing is off under the context-only provider,
    where payments_shared.http.server_span makes the same trace context for far less; metrics stay as they are."""
    return {"tracing": False} if _context_only else {}


@functools.cache
def tracer() -> trace.Tracer:
    # Once per process: the SDK builds a new Tracer on every get_tracer call (~7 µs, several per request). A
    # tracer taken before the provider is installed is a proxy that follows it, so caching is safe either way.
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def _span(
    name: str,
    *,
    kind: SpanKind,
    attributes: Mapping[str, AttributeValue],
    context: otel_context.Context | None = None,
) -> Iterator[Span]:
    """A current span that, on an exception, records only its type: messages may hold what logs scrub."""
    with tracer().start_as_current_span(
        name, context=context, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.set_attribute("error.type", type(error).__name__)
            raise


# ---- context in headers and metadata ------------------------------------------------------------------------


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def trace_id_of(traceparent: str | None) -> str | None:
    """`00-<trace id>-<span id>-01` → the 32 hex digits of the trace id."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def with_current_trace(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` carrying the current span's context (replacing any older `traceparent`)."""
    carrier: dict[str, str] = dict(headers)
    _propagator.inject(carrier)
    return carrier


def context_of(headers: Mapping[str, str]) -> otel_context.Context:
    return _propagator.extract(dict(headers))


def _carrying(message: Message, span: SpanContext) -> Message:
    """`message` with `span`'s context in its headers, as the propagator's inject writes it."""
    headers = {**message.headers, TRACEPARENT: traceparent_of(span)}
    if span.trace_state:
        headers[TRACESTATE] = span.trace_state.to_header()
    return dataclasses.replace(message, headers=headers)


# ---- broker -------------------------------------------------------------------------------------------------


def instrument_broker(broker: B) -> B:
    """The same broker object, its `send`/`request` injecting the current trace context into the headers (in a
    PRODUCER/CLIENT span) and its `consume` running each handler in a CONSUMER span continuing the sender's
    trace. Instance attributes, so the adapter keeps its type and everything else it has."""
    send, request, consume = broker.send, broker.request, broker.consume

    async def traced_send(queue: str, message: Message) -> None:
        if _context_only:
            return await send(queue, _carrying(message, child_of()))
        with _span(f"send {queue}", kind=SpanKind.PRODUCER, attributes=_sent(queue, message)):
            await send(queue, _traced(message))

    async def traced_request(queue: str, message: Message, timeout: float) -> Mapping[str, Any]:
        if _context_only:
            return await request(queue, _carrying(message, child_of()), timeout)
        with _span(f"request {queue}", kind=SpanKind.CLIENT, attributes=_sent(queue, message)) as span:
            reply = await request(queue, _traced(message), timeout)
            if isinstance(reply.get("status"), int):
                span.set_attribute("payments.reply.status", reply["status"])
            return reply

    async def traced_consume(queue: str, handler: Handler, prefetch: int = 32) -> None:
        await consume(queue, traced_handler(queue, handler), prefetch)

    setattr(broker, "send", traced_send)  # noqa: B010 - an instance attribute shadowing the method, on purpose
    setattr(broker, "request", traced_request)  # noqa: B010
    setattr(broker, "consume", traced_consume)  # noqa: B010
    return broker


def _sent(queue: str, message: Message) -> dict[str, Any]:
    return {
        "messaging.destination.name": queue,
        "messaging.message.id": message.message_id,
        "payments.command": str(message.body.get("type", "")),
    }


def _traced(message: Message) -> Message:
    return dataclasses.replace(message, headers=with_current_trace(message.headers))


def traced_handler(queue: str, handler: Handler) -> Handler:
    async def handle(message: Message) -> Mapping[str, Any] | None:
        if message.redelivered or message.delivery_count > 1:
            record_redelivery(queue)
        if _context_only:
            with Current(NonRecordingSpan(child_of(context_of(message.headers)))) as span:
                return await handler(_carrying(message, span.get_span_context()))
        attributes = {**_sent(queue, message), "messaging.operation": "process"}
        attributes["messaging.delivery_count"] = message.delivery_count
        with _span(
            f"process {queue}", context=context_of(message.headers), kind=SpanKind.CONSUMER, attributes=attributes
        ):
            return await handler(_traced(message))

    return handle


# ---- event store --------------------------------------------------------------------------------------------


def instrument_event_store(store: S) -> S:
    """The same store object, its `append` in a span and stamping each new event's metadata with the current
    `traceparent` (unless it has one). An instance attribute, so the adapter keeps its type."""
    append = store.append

    async def traced_append(stream: str, events: Sequence[NewEvent], expected_version: int) -> int:
        if _context_only:
            return await append(stream, _stamped(events, traceparent_of(child_of())), expected_version)
        attributes: dict[str, str | int] = {
            "eventstore.stream": stream,
            "eventstore.events": len(events),
            "eventstore.expected": expected_version,
        }
        with _span("eventstore.append", kind=SpanKind.CLIENT, attributes=attributes) as span:
            position = await append(stream, _stamped(events, current_traceparent()), expected_version)
            span.set_attribute("eventstore.position", position)
            return position

    setattr(store, "append", traced_append)  # noqa: B010 - an instance attribute shadowing the method, on purpose
    return store


def _stamped(events: Sequence[NewEvent], traceparent: str | None) -> list[NewEvent]:
    """`events`, each one without a `traceparent` in its metadata given this one."""
    return [
        event
        if traceparent is None or event.metadata.get(TRACEPARENT)
        else dataclasses.replace(event, metadata={**event.metadata, TRACEPARENT: traceparent})
        for event in events
    ]


# ---- providers ----------------------------------------------------------------------------------------------


async def traced_provider_call(provider: str, operation: str, call: Callable[[], Awaitable[R]]) -> R:
    """`await call()` (one provider call) in a CLIENT span, its outcome and latency recorded (span + metric)."""
    started = time.perf_counter()
    outcome = "exception"
    with _provider_span(provider, operation) as span:
        try:
            result = await call()
            outcome = str(getattr(getattr(result, "outcome", None), "value", "unknown"))
            span.set_attribute("payments.provider.outcome", outcome)
            if outcome in FAILED_OUTCOMES:
                span.set_status(Status(StatusCode.ERROR, outcome))
            return result
        finally:
            record_provider_call(provider, operation, outcome, time.perf_counter() - started)


def _provider_span(provider: str, operation: str) -> AbstractContextManager[Span]:
    if _context_only:
        return Current(NonRecordingSpan(child_of()))  # current, so a measurement's exemplar names it, as before
    attributes = {"payments.provider": provider, "payments.provider.operation": operation}
    return _span(f"provider {provider}.{operation}", kind=SpanKind.CLIENT, attributes=attributes)
