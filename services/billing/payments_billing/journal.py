"""The billing worker's journal of accepted changes, so none is lost with embedded mode's in-memory queue.

Once a change holds its idempotency key, the command itself is appended to `billing-command-{command_id}`
(`BillingCommandAccepted`; an Accept.js nonce's value is never stored). At start-up the worker finds the
accepted commands whose key has no recorded response and runs them again as redeliveries: the provider calls
repeat with the same idempotency key and the streams remember what was already applied, so each one completes
exactly once. In services mode RabbitMQ's redelivery does the same for a crashed worker; the sweep then only
finishes what was dead-lettered or left behind.

While the worker runs, a periodic sweep finds the same commands (idle since their key was last claimed, e.g. one
answered 503 after its provider call timed out on every attempt, whose key was released) and runs them again as
new deliveries: the idempotency guard lets it take over only a released key or one idle past the in-flight window,
so a live attempt (the client's retry) keeps its key and the sweep gets 409. The sweep finds those that other
workers accepted too (they are noted as they are appended): a worker stopped for good, as a scale-down stops one,
leaves its open commands to the others."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from payments_shared.eventstore.notes import EventNotes
from payments_shared.eventstore.port import NO_STREAM, EventStore, NewEvent, RecordedEvent, WrongExpectedVersion
from payments_shared.idempotency import IdempotencyGuard, KeyState
from payments_shared.messages import Command
from payments_shared.timestamps import as_utc

STREAM_PREFIX = "billing-command-"
ACCEPTED = "BillingCommandAccepted"
_EVENT_NAMESPACE = uuid.UUID("4f1d1b8e-9f5e-4d3a-8c55-0a7f6f3c2b19")


def journal_stream(command_id: str) -> str:
    return f"{STREAM_PREFIX}{command_id}"


def storable(command: Command) -> dict[str, Any]:
    """The command as kept: an opaque payment method keeps its descriptor only, and the client's Idempotency-Key
    is left out (the command id is derived from it; the key is whatever the client sent, a card number too)."""
    body = command.model_dump()
    body["idempotency_key"] = None
    method = body["payload"].get("payment_method")
    if isinstance(method, Mapping):
        body["payload"]["payment_method"] = {"data_descriptor": method.get("data_descriptor"), "data_value": ""}
    return body


@dataclass(frozen=True)
class OpenCommand:
    body: dict[str, Any]
    message_id: str
    accepted_at: datetime

    @property
    def complete(self) -> bool:
        """Whether the command is kept whole: an Accept.js nonce is not, and only its client can send it again."""
        method = self.body["payload"].get("payment_method")
        return not (isinstance(method, Mapping) and not method.get("data_value"))


# A key released for this was refused before anything of its command was requested (its client got 409): only the
# client's own retry may still carry it out, never recovery.
REFUSED_BEFORE_REQUESTED: Final = "operation_in_progress"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _due(state: KeyState, now: datetime, min_age_s: float) -> bool:
    """Whether an unanswered command may run again: its key idle for `min_age_s`, and its last answer (a 503 that
    released the key) not telling to ask later than `now` (an unresolved Stripe re-drive says in an hour, when an
    operator may have acted). Start-up recovery in embedded mode (`min_age_s` 0: no other worker can be running)
    runs every open command at once."""
    if (now - as_utc(state.claimed_at)).total_seconds() < min_age_s:
        return False
    due_at = state.retry_due_at()
    return min_age_s == 0 or due_at is None or now >= due_at


def _accepted_note(event: RecordedEvent) -> tuple[str, OpenCommand] | None:
    """(command id, command) of a journaled command."""
    if event.type != ACCEPTED or not event.stream.startswith(STREAM_PREFIX):
        return None
    data = event.data
    opened = OpenCommand(dict(data["command"]), str(data["message_id"]), as_utc(event.recorded_at))
    return event.stream.removeprefix(STREAM_PREFIX), opened


class Journal:
    """Besides journaling, it remembers in memory the accepted commands not yet seen answered: those this process
    accepted, those the store held at start-up, and, while it follows the store, those any worker journals since.
    A sweep every few seconds reads no event of the store (on a busy system, reading every event appended since the
    last sweep cost the charges' latency): they are noted as they are appended (`EventNotes`)."""

    def __init__(self, store: EventStore, guard: IdempotencyGuard) -> None:
        self._store = store
        self._guard = guard
        self._accepted = EventNotes(store, _accepted_note, "billing-journal-follower")
        self._unanswered: dict[str, OpenCommand] = {}  # command id → its accepted command

    def start_following(self) -> None:
        """Note the commands journaled from now on, by any worker (until `stop_following`)."""
        self._accepted.start()

    async def stop_following(self) -> None:
        await self._accepted.stop()

    async def accept(self, command: Command, message_id: str, metadata: Mapping[str, Any], *, taking_over: bool) -> str:
        """Journal the command (once); returns when it was first accepted: its first attempt's `issued_at` (a
        client's retry under the same key is a new command, issued later)."""
        # In memory the command is kept whole (an Accept.js nonce too): the sweep can run it again.
        self._unanswered[command.command_id] = OpenCommand(command.model_dump(), message_id, datetime.now(UTC))
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
        """Accepted commands whose key holds no response (none recorded; released after a 503 counts, after a
        409 "in progress" does not), idle for longer than `min_age_s` since their key was last claimed: those this
        process accepted and those journaled since the last call (the first time, the whole store). One whose last
        503 gave a Retry-After not yet past is left for a later call (`_due`)."""
        for command_id, opened in await self._accepted.take():
            self._unanswered.setdefault(command_id, opened)  # this process's own copy is the whole command
        now = _utc_now()
        found: list[OpenCommand] = []
        for command_id, command in list(self._unanswered.items()):
            state = await self._guard.state(command_id)
            if state is None:
                continue
            if state.response is not None:
                del self._unanswered[command_id]
            elif state.released and state.release_reason == REFUSED_BEFORE_REQUESTED:
                continue
            elif _due(state, now, min_age_s):
                found.append(command)
        return found
