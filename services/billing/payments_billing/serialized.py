"""Changes that call a provider, applied one at a time per object, in the same order at the provider and in the
stream (as the transactions service drives its operations).

A change is first recorded as requested, at the version read: that append serialises contenders before any
provider is called. Only the object's one open request is driven: the provider is called with the command's
idempotency key and the parameters fixed in the request, then the outcome is appended, reloading on a concurrent
append without calling the provider again. A contender that finds another command's request open waits for its
outcome; one older than the in-flight window was left by a crash and is driven by whoever finds it (the same
key and parameters, so the provider applies it once). A provider that is unavailable leaves the request open: a
retry, the journal's recovery or the next contender drives it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Generic, Protocol, TypeVar

from payments_shared import faults
from payments_shared.errors import ApiError, conflict
from payments_shared.eventstore.port import WrongExpectedVersion
from payments_shared.messages import Reply
from payments_shared.providers.port import Outcome, ProviderResult

from payments_billing.context import BillingContext, Call
from payments_billing.events import DomainEvent, StoredEvent
from payments_billing.outcomes import provider_error, require_success
from payments_billing.pending import PendingChange
from payments_billing.streams import Loaded

S = TypeVar("S")

WAIT_S: Final = 5.0  # a contender's wait for the open request (well within the gateway's reply timeout)
POLL_S: Final = 0.02
MAX_APPEND_RACES: Final = 50
AFTER_CHANGE_REQUESTED: Final = "after_change_requested"  # fault point: the request is appended, no provider call
AFTER_CHANGE_CALL: Final = "after_change_provider_call"  # fault point: the provider answered, no outcome yet
REQUESTED_STEP: Final = "requested"
OUTCOME_STEP: Final = "outcome"


def failed_data(command_id: str, error: ApiError, now: str) -> dict[str, Any]:
    reply = Reply(status=error.status, body=error.body(), headers=error.headers())
    return {"command_id": command_id, "reply": reply.to_body(), "failed_at": now}


def is_stale(pending: PendingChange, now: str, window_s: float) -> bool:
    requested = datetime.fromisoformat(pending.requested_at.replace("Z", "+00:00"))
    current = datetime.fromisoformat(now.replace("Z", "+00:00"))
    if requested.tzinfo is None:
        requested = requested.replace(tzinfo=UTC)
    return (current - requested).total_seconds() > window_s


@dataclass(frozen=True)
class ChangeKind(Generic[S]):
    """What a kind of serialised change needs from its object's module."""

    stream: str
    fold: Callable[[Sequence[StoredEvent]], S | None]
    pending: Callable[[S | None], PendingChange | None]
    # The `…Requested` event for this call, or ApiError when it may not happen (checked before any provider call).
    request: Callable[[S | None, Call], DomainEvent]
    provider: Callable[[S | None], str]  # the object's provider's name
    # Asks the provider for the open request; the flag is true when this call recorded it (nothing of it can have
    # reached the provider before), false on a re-drive.
    call_provider: Callable[[S | None, PendingChange, Call, bool], Awaitable[ProviderResult]]
    # The outcome event: the change decided with the provider's answer (ApiError → the failure is recorded).
    succeeded: Callable[[S | None, PendingChange, ProviderResult, Call], DomainEvent]
    failed_type: str
    outcome_types: frozenset[str]
    shown: Callable[[S | None, Call], Reply]


class Updatable(Protocol):
    """A customer or a subscription, as an update of it needs it."""

    @property
    def provider(self) -> str: ...

    @property
    def pending_update(self) -> PendingChange | None: ...

    def to_api(self) -> dict[str, Any]: ...


U = TypeVar("U", bound=Updatable)


@dataclass(frozen=True)
class UpdatedObject(Generic[U]):
    """What an object's module gives for its updates: its stream and fold, who may see it, its event types."""

    stream: str
    fold: Callable[[Sequence[StoredEvent]], U | None]
    visible: Callable[[U | None, str], U]
    updated_type: str
    failed_type: str


def updates(
    updated: UpdatedObject[U],
    request: Callable[[U | None, Call], DomainEvent],
    call_provider: Callable[[U, PendingChange, Call, bool], Awaitable[ProviderResult]],
    succeeded: Callable[[U, PendingChange, ProviderResult, Call], DomainEvent],
) -> ChangeKind[U]:
    """The ChangeKind of an object's updates (PUT): the object must exist for its provider to be called."""

    async def call_existing(state: U | None, pending: PendingChange, call: Call, first_attempt: bool) -> ProviderResult:
        assert state is not None  # a request was recorded on it
        return await call_provider(state, pending, call, first_attempt)

    def succeeded_on_existing(
        state: U | None, pending: PendingChange, result: ProviderResult, call: Call
    ) -> DomainEvent:
        assert state is not None
        return succeeded(state, pending, result, call)

    return ChangeKind(
        stream=updated.stream,
        fold=updated.fold,
        pending=lambda state: state.pending_update if state else None,
        request=request,
        provider=lambda state: state.provider if state else "",
        call_provider=call_existing,
        succeeded=succeeded_on_existing,
        failed_type=updated.failed_type,
        outcome_types=frozenset({updated.updated_type, updated.failed_type}),
        shown=lambda state, call: Reply(status=200, body=updated.visible(state, call.workspace).to_api()),
    )


async def change(context: BillingContext, call: Call, kind: ChangeKind[S]) -> Reply:
    deadline = time.monotonic() + WAIT_S
    requested_here = False
    while True:
        loaded = await context.streams.load(kind.stream, kind.fold)
        pending = kind.pending(loaded.state)
        if pending is not None and pending.command_id == call.command_id:
            await drive(context, call, kind, loaded, pending, first_attempt=requested_here)
            return await _outcome_reply(context, call, kind)
        if loaded.applied(call.command_id):  # finished before: a redelivery
            return await _outcome_reply(context, call, kind)
        kind.shown(loaded.state, call)  # 404 for an object this caller may not see, before anything else
        if pending is not None:
            await _finish_or_wait(context, call, kind, loaded, pending, deadline)
            continue
        event = kind.request(loaded.state, call)
        try:
            await context.streams.append(kind.stream, event, loaded.version, call.origin, REQUESTED_STEP)
        except WrongExpectedVersion:
            continue  # another change got in first: look again
        requested_here = True
        faults.reached(AFTER_CHANGE_REQUESTED)


async def without_open_change(context: BillingContext, call: Call, kind: ChangeKind[S]) -> Loaded[S]:
    """The object once no change of it is open, for a command that changes it without recording a request of its
    own (a customer's deletion): an open request is waited for as `change` waits (409 after WAIT_S), one left by
    a crash is finished first. Its caller appends at the version returned, so no request can open meanwhile."""
    deadline = time.monotonic() + WAIT_S
    while True:
        loaded = await context.streams.load(kind.stream, kind.fold)
        if loaded.applied(call.command_id):  # finished before: a redelivery
            return loaded
        kind.shown(loaded.state, call)  # 404 for an object this caller may not see, before any wait
        pending = kind.pending(loaded.state)
        if pending is None:
            return loaded
        await _finish_or_wait(context, call, kind, loaded, pending, deadline)


async def _finish_or_wait(
    context: BillingContext, call: Call, kind: ChangeKind[S], loaded: Loaded[S], pending: PendingChange, deadline: float
) -> None:
    """One step past another command's open request: drive it when a crash left it, else wait a moment for it
    (409 `operation_in_progress` once `deadline` passed). The caller loads the object again."""
    if is_stale(pending, call.now, context.in_flight_window_s):
        await drive(context, call, kind, loaded, pending)
    elif time.monotonic() > deadline:
        raise conflict("Another change of this object is in progress; retry.", code="operation_in_progress")
    else:
        await asyncio.sleep(POLL_S)


async def drive(
    context: BillingContext,
    call: Call,
    kind: ChangeKind[S],
    loaded: Loaded[S],
    pending: PendingChange,
    first_attempt: bool = False,
) -> None:
    """Call the provider for the open request and append its outcome. 503 (the request stays open) when the
    provider is unavailable. `first_attempt`: this call recorded the request."""
    result = await kind.call_provider(loaded.state, pending, call, first_attempt)
    if result.outcome in (Outcome.RETRYABLE, Outcome.UNAVAILABLE):
        raise provider_error(kind.provider(loaded.state), result)
    faults.reached(AFTER_CHANGE_CALL)
    for _ in range(MAX_APPEND_RACES):
        if kind.pending(loaded.state) != pending:  # another delivery recorded its outcome meanwhile
            return
        event = _outcome(kind, loaded.state, pending, result, call)
        try:
            await context.streams.append(
                kind.stream, event, loaded.version, call.origin, OUTCOME_STEP, on_behalf_of=pending.command_id
            )
        except WrongExpectedVersion:
            loaded = await context.streams.load(kind.stream, kind.fold)
            continue
        return
    raise RuntimeError(f"{kind.stream}: too many concurrent appends; giving up for a redelivery")


def _outcome(
    kind: ChangeKind[S], state: S | None, pending: PendingChange, result: ProviderResult, call: Call
) -> DomainEvent:
    try:
        return kind.succeeded(state, pending, require_success(kind.provider(state), result), call)
    except ApiError as error:
        return DomainEvent(kind.failed_type, failed_data(pending.command_id, error, call.now))


async def _outcome_reply(context: BillingContext, call: Call, kind: ChangeKind[S]) -> Reply:
    """The command's reply from its recorded outcome: the object as that outcome left it, or its error."""
    events = await context.streams.read(kind.stream)
    for index, event in enumerate(events):
        if event.type in kind.outcome_types and event.data.get("command_id") == call.command_id:
            if event.type == kind.failed_type:
                return Reply.model_validate(event.data["reply"])
            return kind.shown(kind.fold(events[: index + 1]), call)
    return kind.shown(kind.fold(events), call)  # applied before requests were recorded (an older stream)
