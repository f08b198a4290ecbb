"""A tracer provider that records nothing and still carries the trace context: what a process installs when no
span exporter (or extra span processor) is configured, so that a span costs an id and a context switch, not a
recorded SDK span with its attributes, events and processors.

Each span is a `NonRecordingSpan` with a fresh span id, in the parent's trace (a new trace id when there is no
parent), with the parent's trace flags and state (sampled for a new trace): the same `traceparent` values the
SDK's default sampler (parent-based, always on) would propagate, so headers and event metadata are unchanged.
`child_of`, `Current` and `traceparent_of` are the same steps for payments_shared.tracing's seams, which skip the
tracer altogether under this provider.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.util.types import Attributes

_ids: Final = RandomIdGenerator()
_NEW_TRACE_FLAGS: Final = TraceFlags(TraceFlags.SAMPLED)


def child_of(context: Context | None = None) -> SpanContext:
    """A new span's context, child of the current span (or of the one in `context`): in its trace with its flags and
    state, or in a new sampled trace."""
    parent = trace.get_current_span(context).get_span_context()
    if parent.is_valid:
        trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
    else:
        trace_id, flags, state = _ids.generate_trace_id(), _NEW_TRACE_FLAGS, None
    return SpanContext(trace_id, _ids.generate_span_id(), is_remote=False, trace_flags=flags, trace_state=state)


def traceparent_of(span: SpanContext) -> str:
    """The W3C `traceparent` value of a valid span context, as the propagator writes it."""
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"


class Current:
    """`span` current for a `with` block: all that `trace.use_span` does for a span that records nothing."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, *exc_info: object) -> None:
        otel_context.detach(self._token)


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
        return NonRecordingSpan(child_of(context))

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
        with Current(self.start_span(name, context)) as span:
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
