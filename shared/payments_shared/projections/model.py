"""What a projection is: a stream prefix and a pure function from a stream's events to its list entry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from payments_shared.eventstore.port import RecordedEvent


@dataclass(frozen=True)
class ListEntry:
    """One object as a list shows it: the API JSON (`body`) plus the columns lists filter and sort on."""

    id: str
    workspace: str
    created_at: str  # ISO 8601, as the object's own `created_at`
    body: Mapping[str, Any]
    status: str | None = None
    customer_id: str | None = None
    email: str | None = None
    listed: bool = True  # False for an object no longer shown (a deleted customer): kept, so versions stay known


# The stream's events in order (a prefix of it while catching up) → its entry, or None when it has none yet.
EntryOf = Callable[[Sequence[RecordedEvent]], ListEntry | None]


@dataclass(frozen=True)
class Projection:
    name: str  # "transactions": the read model's name, as `payments-ops replay` takes it
    stream_prefix: str  # "transaction-txn_": the streams it reads (objects only, not `…-reference-…` lookups)
    entry_of: EntryOf

    def follows(self, stream: str) -> bool:
        return stream.startswith(self.stream_prefix)

    def stream_of(self, object_id: str) -> str | None:
        """The stream of `object_id` when it is one of this projection's objects (`txn_…` → `transaction-txn_…`)."""
        kind, _, id_prefix = self.stream_prefix.partition("-")
        return f"{kind}-{object_id}" if object_id.startswith(id_prefix) else None
