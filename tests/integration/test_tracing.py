"""One trace from the gateway's HTTP request, across the broker, through the transactions worker, into the
event store's metadata — with an in-memory span exporter in this process.

Services mode (the `amqp` case): the gateway app and the transactions worker each have their own RabbitMQ
connection (a fresh virtual host) and meet only through RabbitMQ's queues, as separate processes would; they
share this process only so that one in-memory exporter sees both sides. The `memory` case is the embedded
wiring (one in-memory broker). Both use the real factories, so what is traced is what the services run.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from payments_billing.main import start_billing
from payments_gateway.app import create_app
from payments_gateway.settings import GatewaySettings
from payments_shared.broker.factory import open_broker
from payments_shared.broker.port import Broker
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import RecordedEvent
from payments_shared.metrics import reader_from_environment
from payments_shared.providers.registry import build_providers, close_providers
from payments_shared.providers.sandbox import SandboxSettings
from payments_shared.tracing import exporter_from_environment, trace_id_of
from payments_transactions.main import start_transactions
from payments_transactions.settings import TransactionsSettings

from tests.blackbox.server import mint_token, new_workspace

SECRET = "tracing-test-secret-0123456789abcdef-0123456789"
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass(frozen=True)
class Gateway:
    http: httpx.AsyncClient
    store_uri: str


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        # For the rest of the session: OpenTelemetry sets the global provider once per process, with no undo.
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


async def _connect(url: str, shared: Broker | None) -> Broker:
    return shared if shared is not None else await open_broker(url)


@pytest.fixture
async def gateway(broker_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = TransactionsSettings(data_dir=tmp_path, eventstore_uri=f"sqlite:///{tmp_path / 'events.db'}")
    store = open_event_store(settings.eventstore_uri)
    worker_broker = await open_broker(broker_url)
    gateway_broker = await _connect(broker_url, worker_broker if broker_url == "memory://" else None)
    providers = build_providers(settings, tmp_path, SandboxSettings())
    worker = await start_transactions(worker_broker, store, providers, settings)
    await start_billing(worker_broker, store, providers, settings)
    app = create_app(GatewaySettings(payments_jwt_secret=SECRET), gateway_broker, {})
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            yield Gateway(client, settings.eventstore_uri)
    finally:
        stop = getattr(worker, "stop", None)
        if stop is not None:
            await stop()
        if gateway_broker is not worker_broker:
            await gateway_broker.close()
        await worker_broker.close()
        await close_providers(providers)
        await store.close()


async def _events(store_uri: str, transaction_id: str) -> list[RecordedEvent]:
    store = open_event_store(store_uri)
    try:
        return await store.read(f"transaction-{transaction_id}")
    finally:
        await store.close()


def _token() -> str:
    permissions = ["payments:admin", "customer:create"]
    claims = {"sub": "tracer", "workspace": "ws_trace", "permissions": permissions, "exp": 4_102_444_800}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _of_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind, prefix: str) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is kind and span.name.startswith(prefix)]


async def test_one_trace_id_from_the_request_to_the_stored_events(
    gateway: Gateway, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    traceparent = f"00-{CLIENT_TRACE_ID}-00f067aa0ba902b7-01"
    response = await gateway.http.post(
        "/api/v1/payments/charge",
        json={"amount": 1099, "currency": "usd", "payment_method": "pm_card_visa"},
        headers={"Authorization": f"Bearer {_token()}", "traceparent": traceparent},
    )
    assert response.status_code == 201, response.text
    finished = spans.get_finished_spans()

    [server] = _of_kind(finished, SpanKind.SERVER, "POST /api/v1/payments/charge")
    trace_id = format(server.context.trace_id, "032x")
    assert trace_id == CLIENT_TRACE_ID  # the gateway continues the caller's trace
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 201
    [client_span] = _of_kind(finished, SpanKind.CLIENT, "request payments.transactions")
    [consumer] = _of_kind(finished, SpanKind.CONSUMER, "process payments.transactions")
    appends = _of_kind(finished, SpanKind.CLIENT, "eventstore.append")
    assert appends
    [provider_call] = _of_kind(finished, SpanKind.CLIENT, "provider sandbox.pay")
    assert provider_call.attributes is not None and provider_call.attributes["payments.provider.outcome"] == "approved"
    for span in (client_span, consumer, provider_call, *appends):
        assert format(span.context.trace_id, "032x") == trace_id, span.name
    assert consumer.parent is not None and consumer.parent.span_id == client_span.context.span_id

    events = await _events(gateway.store_uri, response.json()["id"])
    assert [event.type for event in events] == ["TransactionRequested", "PaymentCaptured"]
    for event in events:
        assert trace_id_of(event.metadata.get("traceparent")) == trace_id


async def test_a_request_without_traceparent_starts_a_trace_that_reaches_the_events(
    gateway: Gateway, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    response = await gateway.http.post(
        "/api/v1/payments/authorize",
        json={"amount": 500, "currency": "eur", "payment_method": "pm_card_visa"},
        headers={"Authorization": f"Bearer {_token()}"},
    )
    assert response.status_code == 201, response.text
    [server] = _of_kind(spans.get_finished_spans(), SpanKind.SERVER, "POST /api/v1/payments/authorize")
    assert server.parent is None
    events = await _events(gateway.store_uri, response.json()["id"])
    assert {trace_id_of(event.metadata.get("traceparent")) for event in events} == {
        format(server.context.trace_id, "032x")
    }


async def test_a_billing_request_is_one_trace_through_the_billing_worker_and_its_provider(
    gateway: Gateway, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    response = await gateway.http.post(
        "/api/v1/payments/customers",
        json={"email": "trace@example.com"},
        headers={"Authorization": f"Bearer {_token()}"},
    )
    assert response.status_code == 201, response.text
    finished = spans.get_finished_spans()
    [server] = _of_kind(finished, SpanKind.SERVER, "POST /api/v1/payments/customers")
    trace_id = server.context.trace_id
    [consumer] = _of_kind(finished, SpanKind.CONSUMER, "process payments.billing")
    [provider_call] = _of_kind(finished, SpanKind.CLIENT, "provider sandbox.create_customer")
    assert {consumer.context.trace_id, provider_call.context.trace_id} == {trace_id}
    store = open_event_store(gateway.store_uri)
    try:
        events = await store.read(f"customer-{response.json()['id']}")
    finally:
        await store.close()
    assert events and {trace_id_of(event.metadata.get("traceparent")) for event in events} == {format(trace_id, "032x")}


def test_in_services_mode_the_callers_trace_id_reaches_the_stored_events(services_http: httpx.Client) -> None:
    """Real processes (gateway, transactions worker) over RabbitMQ: each process traces (its bootstrap installs
    the SDK) and the trace id travels HTTP → message header → worker → event metadata, read back by the API."""
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    token = mint_token(new_workspace())
    headers = {"Authorization": f"Bearer {token}", "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
    body = {"amount": 1099, "currency": "usd", "payment_method": "pm_card_visa"}
    response = services_http.post("/api/v1/payments/charge", json=body, headers=headers)
    assert response.status_code == 201, response.text
    events = services_http.get(
        f"/api/v1/payments/transactions/{response.json()['id']}/events", headers={"Authorization": f"Bearer {token}"}
    ).json()["data"]
    assert [event["type"] for event in events] == ["TransactionRequested", "PaymentCaptured"]
    for event in events:
        traceparent = event["metadata"]["traceparent"]
        assert trace_id_of(traceparent) == trace_id
        assert traceparent.split("-")[2] != "b7ad6b7169203331"  # a span of the worker's, not the caller's


# ---- set-up from the standard OTEL_* variables ----------------------------------------------------------------

OTEL_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_nothing_is_exported_by_default(clean_otel_env: pytest.MonkeyPatch) -> None:
    assert exporter_from_environment() is None
    assert reader_from_environment() is None


def test_console_export_is_chosen_by_the_standard_variable(clean_otel_env: pytest.MonkeyPatch) -> None:
    clean_otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    assert isinstance(exporter_from_environment(), ConsoleSpanExporter)


def test_otlp_over_grpc_without_its_exporter_package_is_one_warning(
    clean_otel_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # OTLP/HTTP's exporter is a dependency; gRPC's is the operator's to install.
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None:
        pytest.skip("the OTLP/gRPC exporter is installed here")
    with caplog.at_level(logging.WARNING):
        assert exporter_from_environment() is None
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("opentelemetry-exporter-otlp" in message for message in warnings), warnings


class _OtlpSink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent: (path, body) in `received`."""

    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


EXPORTING_PROBE = """
from payments_shared import tracing
tracing.configure_telemetry("otlp-probe")
with tracing.tracer().start_as_current_span("exported-span"):
    tracing.record_redelivery("payments.transactions")
"""


def test_a_process_given_an_otlp_endpoint_exports_its_spans_and_metrics() -> None:
    # The OTLP/HTTP exporter was not a dependency: every process and image logged "not installed", exported nothing.
    _OtlpSink.received = []
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtlpSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
        env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES} | {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint
        }
        done = subprocess.run(
            [sys.executable, "-c", EXPORTING_PROBE], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    finally:
        sink.shutdown()
        sink.server_close()
    traces = [body for path, body in _OtlpSink.received if path == "/v1/traces"]
    exported = ExportTraceServiceRequest()
    exported.ParseFromString(b"".join(traces[:1]))
    names = [
        span.name for resource in exported.resource_spans for scope in resource.scope_spans for span in scope.spans
    ]
    assert names == ["exported-span"], (done.stderr, [path for path, _ in _OtlpSink.received])
    assert "/v1/metrics" in {path for path, _ in _OtlpSink.received}


PROBE = """
import asyncio, json
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from payments_shared import metrics, tracing

reader = InMemoryMetricReader()
tracing.configure_telemetry("probe", metric_reader=reader)

class Result:
    class outcome:
        value = "declined"

async def call():
    return Result()

async def main():
    with tracing.tracer().start_as_current_span("probe"):
        traceparent = tracing.current_traceparent()
        await tracing.traced_provider_call("sandbox", "pay", call)
    tracing.record_redelivery("payments.transactions")
    metrics.observe_breakers("transactions", lambda: {"sandbox": {"state": "open"}})
    data = reader.get_metrics_data()
    names = sorted(
        metric.name
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )
    print(json.dumps({"traceparent": traceparent, "metrics": names}))

asyncio.run(main())
"""


def _probe(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_configured_process_makes_trace_ids_and_records_metrics_without_any_exporter() -> None:
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    probed = _probe(env)
    assert trace_id_of(probed["traceparent"]) is not None
    expected = {"payments.provider.duration", "payments.queue.redeliveries", "payments.breaker.state"}
    assert expected <= set(probed["metrics"])


def test_otel_sdk_disabled_turns_tracing_off() -> None:
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES} | {"OTEL_SDK_DISABLED": "true"}
    assert _probe(env)["traceparent"] is None
