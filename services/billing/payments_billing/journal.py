"""The billing worker's journal of accepted changes, so none is lost with embedded mode's in-memory queue.

Once a change holds its idempotency key, the command itself is appended to `billing-command-{command_id}`
(`BillingCommandAccepted`; an Accept.js nonce's value is never stored). At start-up the worker finds the
accepted commands whose key has no recorded response and runs them again as redeliveries: the provider calls
repeat with the same idempotency key and the streams remember what was already applied, so each one completes
exactly once. In services mode RabbitMQ's redelivery does the same for a crashed worker; the sweep then only
finishes what was dead-lettered or left behind."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from payments_shared.eventstore.port import NO_STREAM, EventStore, NewEvent, WrongExpectedVersion
from payments_shared.idempotency import IdempotencyGuard
from payments_shared.messages import Command

STREAM_PREFIX = "billing-command-"
ACCEPTED = "BillingCommandAccepted"
_EVENT_NAMESPACE = uuid.UUID("4f1d1b8e-9f5e-4d3a-8c55-0a7f6f3c2b19")


def journal_stream(command_id: str) -> str:
    return f"{STREAM_PREFIX}{command_id}"


def storable(command: Command) -> dict[str, Any]:
    """The command as kept: an opaque payment method keeps its descriptor only."""
    body = command.model_dump()
    method = body["payload"].get("payment_method")
    if isinstance(method, Mapping):
        body["payload"]["payment_method"] = {"data_descriptor": method.get("data_descriptor"), "data_value": ""}
    return body


@dataclass(frozen=True)
class OpenCommand:
    body: dict[str, Any]
    message_id: str
    accepted_at: datetime


class Journal:
    def __init__(self, store: EventStore, guard: IdempotencyGuard) -> None:
        self._store = store
        self._guard = guard

    async def accept(self, command: Command, message_id: str, metadata: Mapping[str, Any], *, taking_over: bool) -> str:
        """Journal the command (once); returns when it was first accepted: its first attempt's `issued_at` (a
        client's retry under the same key is a new command, issued later)."""
        if taking_over:
            first = await self._accepted_at(command.command_id)
            if first is not None:
                return first
        event_id = uuid.uuid5(_EVENT_NAMESPACE, command.command_id)
        event = NewEvent(ACCEPTED, {"command": storable(command), "message_id": message_id}, metadata, event_id)
        with contextlib.suppress(WrongExpectedVersion):  # accepted before: a take-over of an earlier attempt
            await self._store.append(journal_stream(command.command_id), [event], NO_STREAM)
        return command.issued_at

    async def _accepted_at(self, command_id: str) -> str | None:
        recorded = await self._store.read(journal_stream(command_id))
        issued_at = recorded[0].data["command"].get("issued_at") if recorded else None
        return str(issued_at) if issued_at else None

    async def open_commands(self, min_age_s: float) -> list[OpenCommand]:
        """Accepted commands, idle for longer than `min_age_s`, whose key holds no response."""
        now = datetime.now(UTC)
        found: list[OpenCommand] = []
        async for event in self._store.read_all():
            if event.type != ACCEPTED or not event.stream.startswith(STREAM_PREFIX):
                continue
            accepted_at = event.recorded_at if event.recorded_at.tzinfo else event.recorded_at.replace(tzinfo=UTC)
            if (now - accepted_at).total_seconds() < min_age_s:
                continue
            state = await self._guard.state(event.stream.removeprefix(STREAM_PREFIX))
            if state is not None and state.response is None:
                found.append(OpenCommand(dict(event.data["command"]), str(event.data["message_id"]), accepted_at))
        return found
