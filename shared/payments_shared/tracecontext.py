"""A tracer provider that records nothing and still carries the trace context: what a process installs when no
span exporter (or extra span processor) is configured, so that a span costs an id and a context switch, not a
recorded SDK span with its attributes, events and processors.

Each span is a `NonRecordingSpan` with a fresh span id, in the parent's trace (a new trace id when there is no
parent), with the parent's trace flags and state (sampled for a new trace): the same `traceparent` values the
SDK's default sampler (parent-based, always on) would propagate, so headers and event metadata are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.util.types import Attributes

_ids: Final = RandomIdGenerator()
_NEW_TRACE_FLAGS: Final = TraceFlags(TraceFlags.SAMPLED)


class ContextOnlyTracer(trace.Tracer):
    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
        else:
            trace_id, flags, state = _ids.generate_trace_id(), _NEW_TRACE_FLAGS, None
        span_id = _ids.generate_span_id()
        return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags, trace_state=state))

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API's private context-manager type, same protocol
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(name, context)
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield span


class ContextOnlyTracerProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self._tracer = ContextOnlyTracer()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return self._tracer
