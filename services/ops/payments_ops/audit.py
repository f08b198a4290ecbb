"""`payments-ops audit OBJECT_ID`: one object's stream as a timeline (time, event, actor, key fields,
correlation id), or `--json` (one JSON document with every event as stored)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Any, Final

from payments_shared.eventstore.port import RecordedEvent

from payments_ops import stores
from payments_ops.objects import event_json, event_time, stream_of

# Fields worth a glance in a timeline; everything is in --json.
KEY_FIELDS: Final = (
    "kind",
    "amount",
    "currency",
    "released",
    "refund_id",
    "reason",
    "status",
    "failure_code",
    "failure_reason",
    "provider_status",
    "provider",
    "provider_reference",
    "email",
    "customer_id",
    "subscription_id",
    "quantity",
    "at_period_end",
    "outcome",
    "message",
)


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="an object's history as a timeline")
    audit.add_argument("object_id", metavar="OBJECT_ID", help="txn_…, cus_… or sub_…")
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    audit.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    stream = stream_of(arguments.object_id)
    if stream is None:
        print(f"payments-ops audit: {arguments.object_id!r} is not a txn_, cus_ or sub_ id", file=sys.stderr)
        return 2
    events = asyncio.run(_read(stream))
    if not events:
        print(f"payments-ops audit: no events for {arguments.object_id}", file=sys.stderr)
        return 1
    if arguments.json:
        json.dump({"id": arguments.object_id, "stream": stream, "events": [event_json(e) for e in events]}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"{arguments.object_id}  ({stream}, {len(events)} events, workspace {_workspace(events)})")
        for event in events:
            print(timeline_line(event))
    return 0


async def _read(stream: str) -> list[RecordedEvent]:
    async with stores.event_store(stores.settings()) as store:
        return await store.read(stream)


def _workspace(events: list[RecordedEvent]) -> str:
    return str(events[0].metadata.get("workspace", "?"))


def timeline_line(event: RecordedEvent) -> str:
    metadata = event.metadata
    actor = metadata.get("actor", "-")
    correlation = metadata.get("$correlationId", "-")
    return (
        f"{event_time(event):<27}  #{event.version:<3} {event.type:<24} by {actor:<20} "
        f"{key_fields(event.data):<60}  correlation={correlation}"
    )


def key_fields(data: Mapping[str, Any]) -> str:
    shown = []
    asked = data.get("parameters")  # a customer's or subscription's change recorded as requested
    fields = {**asked, **data} if isinstance(asked, Mapping) else data
    for name in KEY_FIELDS:
        value = fields.get(name)
        if value is not None and not isinstance(value, dict | list):
            shown.append(f"{name}={value}")
    changes = data.get("changes")
    if isinstance(changes, Mapping) and changes:
        shown.append("changed=" + ",".join(sorted(changes)))
    error = data.get("error")
    if isinstance(error, Mapping):
        shown.append(f"error={error.get('code')}")
    elif isinstance(failed := _failed_reply_error(data), Mapping):
        shown.append(f"error={failed.get('code') or failed.get('type')}")
    return " ".join(shown)


def _failed_reply_error(data: Mapping[str, Any]) -> Any:
    """The error a billing change's failed outcome answered (its `reply` as recorded)."""
    reply = data.get("reply")
    body = reply.get("body") if isinstance(reply, Mapping) else None
    return body.get("error") if isinstance(body, Mapping) else None
