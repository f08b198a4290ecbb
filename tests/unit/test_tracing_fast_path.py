"""The seams of payments_shared.tracing under the context-only provider (no exporter): each case runs twice, on the
fast path that skips the tracer (what a configured process does) and through the span machinery with the
context-only tracer (what it did before), and both must make the same trace context: the `traceparent` crossing the
broker, the one a handler sees, the one stamped on appended events, the span a provider call runs in, and the
metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from payments_shared import tracing
from payments_shared.broker.memory import InMemoryBroker
from payments_shared.broker.port import Message
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.eventstore.port import NO_STREAM, NewEvent
from payments_shared.http.server_span import ServerSpanContext
from payments_shared.tracecontext import ContextOnlyTracer, ContextOnlyTracerProvider, Current, traceparent_of

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
STATE = TraceState([("vendor", "v1")])
PARENT = SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=STATE)
PARENT_HEADERS = {"traceparent": traceparent_of(PARENT), "tracestate": STATE.to_header(), "tenant": "ws_1"}


@pytest.fixture(params=["fast path", "span machinery"])
def context_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "fast path":
        monkeypatch.setattr(tracing, "_context_only", True)
    else:
        monkeypatch.setattr(tracing, "tracer", ContextOnlyTracer)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tracing, "record_provider_call", lambda *args: calls.append(("provider call", *args)))
    monkeypatch.setattr(tracing, "record_redelivery", lambda queue: calls.append(("redelivery", queue)))
    yield calls


def _parsed(traceparent: str) -> tuple[int, int, int]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16), int(flags, 16)


def _assert_child_of_parent(traceparent: str) -> None:
    trace_id, span_id, flags = _parsed(traceparent)
    assert (trace_id, flags) == (TRACE_ID, TraceFlags.SAMPLED)
    assert span_id not in (0, SPAN_ID)


def _current() -> SpanContext:
    return trace.get_current_span().get_span_context()


def test_a_traceparent_is_written_as_the_propagator_writes_it() -> None:
    for flags in (TraceFlags.DEFAULT, TraceFlags.SAMPLED):
        span = SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(flags))
        carrier: dict[str, str] = {}
        with Current(NonRecordingSpan(span)):
            TraceContextTextMapPropagator().inject(carrier)
        assert traceparent_of(span) == carrier["traceparent"]


async def test_a_message_sent_carries_a_new_span_of_the_senders_trace(context_only: None) -> None:
    broker = InMemoryBroker()
    consume_as_is = broker.consume  # the adapter's own: what crossed the broker, untouched by the consumer side
    broker = tracing.instrument_broker(broker)
    crossed: list[Mapping[str, str]] = []

    async def handler(message: Message) -> Mapping[str, Any]:
        crossed.append(message.headers)
        return {"status": 200}

    await consume_as_is("q", handler)
    with Current(NonRecordingSpan(PARENT)):
        await broker.send("q", Message({"type": "charge"}, headers={"tenant": "ws_1"}))
        assert await broker.request("q", Message({"type": "charge"}), timeout=5) == {"status": 200}
        assert _current() == PARENT
    await broker.close()
    assert len(crossed) == 2 and crossed[0]["tenant"] == "ws_1"
    for headers in crossed:
        _assert_child_of_parent(headers["traceparent"])
        assert headers["tracestate"] == STATE.to_header()
    assert crossed[0]["traceparent"] != crossed[1]["traceparent"]


async def test_a_handler_runs_in_a_new_span_continuing_the_senders_trace(
    context_only: None, recorded: list[tuple[Any, ...]]
) -> None:
    seen: list[tuple[Mapping[str, str], str | None]] = []

    async def handler(message: Message) -> Mapping[str, Any]:
        seen.append((message.headers, tracing.current_traceparent()))
        return {"status": 200}

    handle = tracing.traced_handler("q", handler)
    assert await handle(Message({"type": "charge"}, headers=PARENT_HEADERS)) == {"status": 200}
    [(headers, current)] = seen
    _assert_child_of_parent(headers["traceparent"])
    assert current == headers["traceparent"]  # the handler's span is current, and is the one in its headers
    assert (headers["tracestate"], headers["tenant"]) == (STATE.to_header(), "ws_1")
    assert not _current().is_valid
    assert recorded == []


@pytest.mark.parametrize("traceparent", [None, "00-not-a-traceparent-01", f"00-{'0' * 32}-{SPAN_ID:016x}-01"])
async def test_a_handler_without_a_valid_traceparent_starts_a_sampled_trace(
    context_only: None, traceparent: str | None
) -> None:
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.headers["traceparent"])

    headers = {} if traceparent is None else {"traceparent": traceparent}
    await tracing.traced_handler("q", handler)(Message({"type": "charge"}, headers=headers))
    trace_id, span_id, flags = _parsed(seen[0])
    assert trace_id not in (0, TRACE_ID) and span_id != 0 and flags == TraceFlags.SAMPLED


async def test_a_redelivery_is_counted_once_per_delivery(context_only: None, recorded: list[tuple[Any, ...]]) -> None:
    async def handler(message: Message) -> None:
        return None

    handle = tracing.traced_handler("payments.transactions", handler)
    await handle(Message({"type": "charge"}, headers=PARENT_HEADERS, redelivered=True, delivery_count=2))
    await handle(Message({"type": "charge"}, headers=PARENT_HEADERS))
    assert recorded == [("redelivery", "payments.transactions")]


async def test_appended_events_get_a_new_span_of_the_current_trace_unless_they_have_one(context_only: None) -> None:
    store = tracing.instrument_event_store(InMemoryEventStore())
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    events = [NewEvent("A", {}), NewEvent("B", {}, metadata={"traceparent": theirs, "actor": "u"})]
    with Current(NonRecordingSpan(PARENT)):
        assert await store.append("s-1", events, NO_STREAM) == 2
        assert _current() == PARENT
    first, second = await store.read("s-1")
    _assert_child_of_parent(first.metadata["traceparent"])
    assert second.metadata == {"traceparent": theirs, "actor": "u"}


DECLINED = SimpleNamespace(outcome=SimpleNamespace(value="declined"))  # the shape of a provider result


async def test_a_provider_call_runs_in_a_new_span_and_is_measured(
    context_only: None, recorded: list[tuple[Any, ...]]
) -> None:
    during: list[str | None] = []

    async def call() -> SimpleNamespace:
        during.append(tracing.current_traceparent())
        return DECLINED

    with Current(NonRecordingSpan(PARENT)):
        assert await tracing.traced_provider_call("sandbox", "pay", call) is DECLINED
        assert _current() == PARENT
    assert during[0] is not None
    _assert_child_of_parent(during[0])
    [(kind, provider, operation, outcome, seconds)] = recorded
    assert (kind, provider, operation, outcome) == ("provider call", "sandbox", "pay", "declined")
    assert seconds >= 0


async def test_a_provider_call_that_raises_is_measured_as_an_exception(
    context_only: None, recorded: list[tuple[Any, ...]]
) -> None:
    async def call() -> SimpleNamespace:
        raise ConnectionError("refused")

    with Current(NonRecordingSpan(PARENT)), pytest.raises(ConnectionError):
        await tracing.traced_provider_call("sandbox", "pay", call)
    assert [entry[:4] for entry in recorded] == [("provider call", "sandbox", "pay", "exception")]
    assert not _current().is_valid


def test_the_context_only_tracer_makes_its_span_current_for_the_block() -> None:
    tracer = ContextOnlyTracer()
    with Current(NonRecordingSpan(PARENT)):
        with pytest.raises(KeyError), tracer.start_as_current_span("op") as span:
            assert _current() == span.get_span_context()
            _assert_child_of_parent(traceparent_of(span.get_span_context()))
            raise KeyError("x")
        assert _current() == PARENT


def _http_app(fast_path: bool) -> FastAPI:
    """A route that answers with the trace context it runs in: made by ServerSpanContext (the fast path, FastAPI's
    tracing off as `fastapi_telemetry` sets it) or by FastAPI's own telemetry with the context-only provider."""
    telemetry = tracing.fastapi_telemetry() if fast_path else {"tracer_provider": ContextOnlyTracerProvider()}
    app = FastAPI(telemetry=telemetry)

    @app.get("/context")
    async def context() -> dict[str, str | None]:
        carrier = tracing.with_current_trace({})
        return {"traceparent": carrier.get("traceparent"), "tracestate": carrier.get("tracestate")}

    app.add_middleware(ServerSpanContext)
    return app


@pytest.fixture(params=["fast path", "fastapi telemetry"])
def http_app(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    fast_path = request.param == "fast path"
    monkeypatch.setattr(tracing, "_context_only", fast_path)
    return _http_app(fast_path)


async def _context_seen(app: FastAPI, headers: Mapping[str, str]) -> dict[str, str | None]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        response = await client.get("/context", headers=headers)
    assert response.status_code == 200
    seen: dict[str, str | None] = response.json()
    return seen


async def test_a_request_runs_in_a_new_span_continuing_the_callers_trace(http_app: FastAPI) -> None:
    seen = await _context_seen(http_app, PARENT_HEADERS)
    assert seen["traceparent"] is not None
    _assert_child_of_parent(seen["traceparent"])
    assert seen["tracestate"] == STATE.to_header()
    assert not _current().is_valid


@pytest.mark.parametrize("traceparent", [None, "00-not-a-traceparent-01", f"00-{'0' * 32}-{SPAN_ID:016x}-01"])
async def test_a_request_without_a_valid_traceparent_starts_a_sampled_trace(
    http_app: FastAPI, traceparent: str | None
) -> None:
    seen = await _context_seen(http_app, {} if traceparent is None else {"traceparent": traceparent})
    assert seen["traceparent"] is not None
    trace_id, span_id, flags = _parsed(seen["traceparent"])
    assert trace_id not in (0, TRACE_ID) and span_id != 0 and flags == TraceFlags.SAMPLED


def test_fastapi_tracing_is_off_only_under_the_context_only_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_context_only", True)
    assert tracing.fastapi_telemetry() == {"tracing": False}
    monkeypatch.setattr(tracing, "_context_only", False)
    assert tracing.fastapi_telemetry() == {}


async def test_the_middleware_leaves_tracing_to_fastapi_when_spans_are_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "_context_only", False)
    app = FastAPI(telemetry={"tracing": False})  # FastAPI's own span (made when recording) is not this test's

    @app.get("/context")
    async def context() -> dict[str, str | None]:
        return {"traceparent": tracing.with_current_trace({}).get("traceparent")}

    app.add_middleware(ServerSpanContext)
    assert await _context_seen(app, PARENT_HEADERS) == {"traceparent": None}


PROBE = "from payments_shared import tracing; tracing.configure_telemetry('probe'); print(tracing._context_only)"


@pytest.mark.parametrize(("exporter", "context_only"), [("none", True), ("console", False)])
def test_the_fast_path_is_taken_only_when_nothing_records_spans(exporter: str, context_only: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"OTEL_TRACES_EXPORTER": exporter}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1].lower()) is context_only
