"""The trace context of an HTTP request when spans are not recorded (the context-only provider of
payments_shared.tracecontext): a SERVER span, as an id only, continuing the caller's `traceparent` and `tracestate`
(or starting a trace), current while the request is handled, so that commands and events carry it.

FastAPI's own telemetry does the same for a recording provider. Under the context-only provider it would record
nothing and still cost about a tenth of a charge's CPU (attributes, parsing, its own context switches), so
`payments_shared.tracing.fastapi_telemetry` turns its tracing off and apps install this middleware instead.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Receive, Scope, Send

from payments_shared import tracing
from payments_shared.tracecontext import Current, child_of

_TRACEPARENT = b"traceparent"
_TRACESTATE = b"tracestate"
_propagator = TraceContextTextMapPropagator()


def caller_context(headers: list[tuple[bytes, bytes]]) -> Context:
    """The caller's span as the W3C propagator reads it from these headers; an empty context when there is none
    (or it is malformed), so the request starts a new trace."""
    carrier: dict[str, str] = {}
    for name, value in headers:
        if name in (_TRACEPARENT, _TRACESTATE):
            carrier[name.decode()] = value.decode("latin-1")
    return _propagator.extract(carrier, Context()) if _TRACEPARENT.decode() in carrier else Context()


class ServerSpanContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.context_only():
            await self.app(scope, receive, send)
            return
        with Current(NonRecordingSpan(child_of(caller_context(scope["headers"])))):
            await self.app(scope, receive, send)
