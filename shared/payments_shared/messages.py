"""What crosses the broker: commands and queries from the gateway/webhook-ingest to the workers, and the
workers' replies (an HTTP status and a JSON body the gateway passes through unchanged)."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

TRANSACTIONS_QUEUE = "payments.transactions"
BILLING_QUEUE = "payments.billing"
# In a charge/authorize payload, set by the gateway when the charge names a customer that no longer exists: only
# an earlier request with the same Idempotency-Key can answer it (its first response); otherwise 404 customer_id.
CUSTOMER_MISSING = "customer_missing"


def utc_now_iso() -> str:
    """Now in UTC as `2026-11-26T21:30:00.123456Z` (always six digits of microseconds)."""
    second, microsecond = divmod(time.time_ns() // 1000, 1_000_000)
    return f"{_utc_second_iso(second)}.{microsecond:06d}Z"


@functools.lru_cache(maxsize=2)
def _utc_second_iso(unix_second: int) -> str:
    """`2026-11-26T21:30:00` for a Unix second: formatted once a second rather than on every call (speed)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix_second))


class Command(BaseModel):
    """A command or query for a worker. `type` names the handler (charge, capture, get_transaction, …)."""

    type: str
    workspace: str
    actor: str
    command_id: str
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    fingerprint: str | None = None  # hash of the route and canonical body; set for every keyed command
    issued_at: str = Field(default_factory=utc_now_iso)


class Reply(BaseModel):
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)

    def to_body(self) -> dict[str, Any]:
        return self.model_dump()


def event_metadata(
    command: Command, correlation_id: str, causation_id: str, traceparent: str | None = None
) -> dict[str, Any]:
    """Metadata every event carries; `$correlationId`/`$causationId` are EventStoreDB's own names."""
    metadata: dict[str, Any] = {
        "$correlationId": correlation_id,
        "$causationId": causation_id,
        "actor": command.actor,
        "workspace": command.workspace,
        "command_id": command.command_id,
        "occurred_at": utc_now_iso(),
    }
    if traceparent:
        metadata["traceparent"] = traceparent
    return metadata


def public_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The event metadata as API.md shows it (correlation_id/causation_id instead of the $ names)."""
    shown = {k: v for k, v in metadata.items() if not k.startswith("$")}
    shown["correlation_id"] = metadata.get("$correlationId")
    shown["causation_id"] = metadata.get("$causationId")
    return shown
