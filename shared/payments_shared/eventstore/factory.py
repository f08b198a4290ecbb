"""Build the event store an `EVENTSTORE_URI` names (forms in payments_shared.settings.EVENTSTORE_FORMS)."""

from __future__ import annotations

from pathlib import Path

from payments_shared.eventstore.port import EventStore
from payments_shared.tracing import instrument_event_store

SQLITE_PREFIX = "sqlite:///"
KURRENT_SCHEMES = ("kurrentdb://", "esdb://", "kurrentdb+discover://", "esdb+discover://")


def sqlite_path(uri: str) -> Path:
    """`sqlite:///data/events.db` → data/events.db (relative); `sqlite:////srv/events.db` → /srv/events.db."""
    return Path(uri[len(SQLITE_PREFIX) :])


def open_event_store(uri: str) -> EventStore:
    """The adapter for `uri`, traced (a span per append, the trace context in each new event's metadata:
    payments_shared.tracing.instrument_event_store); connections are made here (SQLite) or on first use (KurrentDB).
    Close with `close()`."""
    return instrument_event_store(adapter_for(uri))


def adapter_for(uri: str) -> EventStore:
    """The bare adapter for `uri`, untraced (the contract suite tests the adapters themselves)."""
    if uri == "memory://":
        from payments_shared.eventstore.memory import InMemoryEventStore

        return InMemoryEventStore()
    if uri.startswith(SQLITE_PREFIX):
        from payments_shared.eventstore.sqlite import SqliteEventStore

        path = sqlite_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteEventStore(path)
    if uri.startswith(KURRENT_SCHEMES):
        from payments_shared.eventstore.kurrent import KurrentEventStore

        return KurrentEventStore(uri)
    raise ValueError(f"EVENTSTORE_URI {uri!r}: must be sqlite:///path/events.db, kurrentdb://…, esdb://… or memory://")
