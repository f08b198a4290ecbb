"""`WebhookApplied`: appended to a webhook's stream (the `webhook_stream` of its `apply_provider_event` command)
by the worker that owns the event, once it has applied it or found nothing to apply. webhook-ingest's sweep
counts an event as handed over only then where a forwarded command does not outlive the process (embedded mode's
in-memory broker): a recorded event a crash left unapplied is forwarded again after the restart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from payments_shared.eventstore.port import ANY, EventStore, NewEvent
from payments_shared.messages import utc_now_iso

WEBHOOK_APPLIED: Final = "WebhookApplied"


async def mark_applied(store: EventStore, command_payload: Mapping[str, Any], outcome: Mapping[str, Any]) -> None:
    stream = command_payload.get("webhook_stream")
    if not isinstance(stream, str) or not stream.startswith("webhook-"):
        return
    now = utc_now_iso()
    event = NewEvent(WEBHOOK_APPLIED, {"outcome": dict(outcome), "applied_at": now}, {"occurred_at": now})
    await store.append(stream, [event], ANY)  # a repeat of the command marks it again: harmless
