"""Which stream an object id lives in, and how an event reads in a timeline or an export line.

payments-ops is an operator tool that composes several services, like payments_embedded: it may import their
domain modules (folds, state diagrams, projections) read-only, so a rule is never written twice. It never
appends events and never calls their handlers.
"""

from __future__ import annotations

from typing import Any, Final

from payments_shared.eventstore.port import RecordedEvent
from payments_shared.messages import public_metadata
from payments_shared.projections.readmodel import epoch_us

STREAM_PREFIX_BY_ID_PREFIX: Final = {"txn_": "transaction-", "cus_": "customer-", "sub_": "subscription-"}


def stream_of(object_id: str) -> str | None:
    for id_prefix, stream_prefix in STREAM_PREFIX_BY_ID_PREFIX.items():
        if object_id.startswith(id_prefix):
            return stream_prefix + object_id
    return None


def event_time(event: RecordedEvent) -> str:
    """When it happened: the `occurred_at` the service wrote, else (none, or not a time: `verify` reports that)
    the time the store recorded it."""
    occurred = event.metadata.get("occurred_at")
    if isinstance(occurred, str) and is_time(occurred):
        return occurred
    return event.recorded_at.isoformat().replace("+00:00", "Z")


def is_time(text: str) -> bool:
    try:
        epoch_us(text)
    except (ValueError, OverflowError):
        return False
    return True


def event_json(event: RecordedEvent) -> dict[str, Any]:
    return {
        "position": event.position,
        "stream": event.stream,
        "stream_version": event.version,
        "id": str(event.id),
        "type": event.type,
        "occurred_at": event_time(event),
        "recorded_at": event.recorded_at.isoformat().replace("+00:00", "Z"),
        "data": dict(event.data),
        "metadata": public_metadata(event.metadata),
    }
