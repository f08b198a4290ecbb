"""Idempotency for commands that do not create their own stream (capture, refund, void; billing updates…): a
guard over the event store, one stream per command, `idempotency-{command_id}`.

- `begin` claims the key (`IdempotencyKeyClaimed` expecting no stream). If the key was seen before: a different
  fingerprint or route → 422; a recorded response → that response again (`Idempotent-Replayed: true`); no
  response yet → this delivery takes over only when the earlier attempt is known to be dead or idle (see
  `may_take_over`), by appending a new claim at the version it read, so one taker wins; otherwise 409.
- `record` stores the response (`IdempotentResponseRecorded`); every later `begin` replays it byte-identically.
- `release` marks an attempt that ended without a response worth keeping (a 503), so a retry takes over at once;
  it keeps the answer's Retry-After, so a recovery sweep can wait as long as the client was told to, and its
  message; `begin` told to `Hold` a release's reason answers a retry that 503 again until its Retry-After passed.

A charge or authorization claims its key differently: by creating its transaction's stream, named from the command
id (`created_stream`), which is its existence check on the hot path. `begin` therefore also refuses (422) a key
whose transaction exists, so a key is one operation's across every route, as Stripe's are. That stream's name is
all this module knows of transactions. Of a claim and a transaction racing for one key, the one committed first
wins it (global positions are commit order): each side writes its own first and then looks at the other's, so
exactly one goes ahead (`begin` gives way to an earlier transaction; a charge, `claimed_before` it, is refused).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from payments_shared.errors import ApiError, bounded_retry_after, conflict
from payments_shared.eventstore.port import NO_STREAM, EventStore, NewEvent, RecordedEvent, WrongExpectedVersion
from payments_shared.ids import derived_id
from payments_shared.timestamps import as_utc

KEY_CLAIMED: Final = "IdempotencyKeyClaimed"
RESPONSE_RECORDED: Final = "IdempotentResponseRecorded"
KEY_RELEASED: Final = "IdempotencyKeyReleased"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
MAX_RACES: Final = 20
KEY_REUSED: Final = "idempotency_key_reused"  # the error code of a key used for another request
KEY_MADE_A_TRANSACTION: Final = "This Idempotency-Key was already used for a charge or authorization."
KEY_MADE_ANOTHER_REQUEST: Final = "This Idempotency-Key was already used for a different kind of request."


def key_stream(command_id: str) -> str:
    return f"idempotency-{command_id}"


def created_stream(command_id: str) -> str:
    """The stream a charge or authorization with this command id creates (payments_transactions names it so)."""
    return f"transaction-{derived_id('txn', command_id)}"


def may_take_over(
    *,
    claimed_at: datetime,
    claim_message_id: str,
    message_id: str,
    redelivered: bool,
    idle: bool,
    in_flight_window_s: float,
    now: datetime | None = None,
) -> bool:
    """Whether a delivery may carry on with work an earlier attempt started and did not finish.

    Yes when this is a redelivery or the same message (the earlier attempt died with it), when the earlier
    attempt recorded that it stopped (`idle`), or when it started longer ago than the in-flight window.
    """
    if redelivered or message_id == claim_message_id or idle:
        return True
    if claimed_at.tzinfo is None:  # an adapter that reports naive times means UTC
        claimed_at = claimed_at.replace(tzinfo=UTC)
    age = ((now or datetime.now(UTC)) - claimed_at).total_seconds()
    return age > in_flight_window_s


def idempotency_mismatch(message: str = "") -> ApiError:
    return ApiError(
        "idempotency_error",
        message or "This Idempotency-Key was already used with a different request.",
        code=KEY_REUSED,
    )


def in_progress() -> ApiError:
    return conflict(
        "A request with this Idempotency-Key is still being processed; retry later.", code="idempotency_key_in_use"
    )


@dataclass(frozen=True)
class Hold:
    """`begin` holds a retry to the Retry-After of a release for one of `reasons` (the released answer's error code)
    until it has passed at `now`."""

    now: datetime
    reasons: frozenset[str]


def retry_later(state: KeyState, hold: Hold) -> ApiError | None:
    """The answer to a retry while the released attempt's Retry-After lasts, for a release `hold` names: its 503
    again, with what is left of it (asking the provider sooner would answer the same). None otherwise."""
    due_at = state.retry_due_at()
    if due_at is None or state.release_reason not in hold.reasons or hold.now >= due_at:
        return None
    message = state.release_message or "The provider is unavailable."
    return ApiError(
        "provider_unavailable",
        f"{message} Retry with the same Idempotency-Key after Retry-After.",
        code=state.release_reason,
        retry_after=(due_at - hold.now).total_seconds(),
    )


def replayed(response: Mapping[str, Any]) -> dict[str, Any]:
    headers = {**response.get("headers", {}), REPLAYED_HEADER: "true"}
    return {"status": response["status"], "body": response["body"], "headers": headers}


@dataclass(frozen=True)
class KeyState:
    fingerprint: str | None
    route: str
    target: str | None
    message_id: str
    claimed_at: datetime
    response: Mapping[str, Any] | None
    released: bool
    version: int
    release_reason: str | None = None  # why the key was last released (while `released`)
    released_at: datetime | None = None  # when (while `released`)
    retry_after_s: float | None = None  # the released attempt's answer's Retry-After (while `released`)
    release_message: str | None = None  # the released attempt's answer's message (while `released`)

    def retry_due_at(self) -> datetime | None:
        """When the released attempt's answer said to ask again (None: not released, or no Retry-After)."""
        if not self.released or self.released_at is None or self.retry_after_s is None:
            return None
        return as_utc(self.released_at) + timedelta(seconds=self.retry_after_s)

    @classmethod
    def from_events(cls, recorded: Sequence[RecordedEvent]) -> KeyState | None:
        state: KeyState | None = None
        for event in recorded:
            if event.type == KEY_CLAIMED:
                data = event.data
                response = state.response if state else None
                state = cls(
                    data.get("fingerprint"),
                    data["route"],
                    data.get("target"),
                    data.get("message_id", ""),
                    event.recorded_at,
                    response,
                    False,
                    event.version,
                )
            elif state is not None and event.type == RESPONSE_RECORDED and state.response is None:
                response = {key: event.data[key] for key in ("status", "body", "headers")}
                state = _replace(state, response=response, version=event.version)
            elif state is not None and event.type == KEY_RELEASED:
                data = event.data
                state = _replace(
                    state,
                    released=True,
                    release_reason=data.get("reason"),
                    released_at=event.recorded_at,
                    retry_after_s=bounded_retry_after(data.get("retry_after")),  # None: released before it was kept
                    release_message=data.get("message"),
                    version=event.version,
                )
            elif state is not None:
                state = _replace(state, version=event.version)
        return state


def _replace(state: KeyState, **changes: Any) -> KeyState:
    return replace(state, **changes)


@dataclass(frozen=True)
class Claimed:
    """This delivery owns the key now; `version` is the key stream's version to record the response at."""

    command_id: str
    version: int
    target: str | None

    @property
    def took_over(self) -> bool:
        """Whether an earlier attempt had claimed the key (the first claim is the stream's event 0)."""
        return self.version > 0


@dataclass(frozen=True)
class Replay:
    response: dict[str, Any]


class IdempotencyGuard:
    def __init__(self, store: EventStore, in_flight_window_s: float) -> None:
        self._store = store
        self._window = in_flight_window_s

    async def state(self, command_id: str) -> KeyState | None:
        return KeyState.from_events(await self._store.read(key_stream(command_id)))

    async def begin(
        self,
        command_id: str,
        *,
        fingerprint: str | None,
        route: str,
        target: str | None,
        message_id: str,
        redelivered: bool,
        metadata: Mapping[str, Any],
        hold: Hold | None = None,
    ) -> Claimed | Replay:
        """Claim the key, replay its response, or raise ApiError (422 different request, 409 in progress). With
        `hold`, a key it names released with a Retry-After not yet passed is not taken over: 503 with what is left
        of it (`retry_later`), nothing appended."""
        claim = {"fingerprint": fingerprint, "route": route, "target": target, "message_id": message_id}
        for _ in range(MAX_RACES):
            state = await self.state(command_id)
            if state is not None:
                if state.fingerprint != fingerprint or state.route != route:
                    raise idempotency_mismatch()
                if state.response is not None:
                    return Replay(replayed(state.response))
                held = retry_later(state, hold) if hold is not None else None
                if held is not None:
                    raise held
                if not may_take_over(
                    claimed_at=state.claimed_at,
                    claim_message_id=state.message_id,
                    message_id=message_id,
                    redelivered=redelivered,
                    idle=state.released,
                    in_flight_window_s=self._window,
                ):
                    raise in_progress()
            expected = NO_STREAM if state is None else state.version
            try:
                position = await self._store.append(
                    key_stream(command_id), [NewEvent(KEY_CLAIMED, claim, metadata)], expected
                )
            except WrongExpectedVersion:
                continue  # another delivery moved first: look again
            claimed = Claimed(command_id, expected + 1, target)
            if state is None and await self._created_before(command_id, position):
                await self._give_way(claimed, metadata)
            return claimed
        raise in_progress()

    async def claimed_before(self, command_id: str, position: int) -> bool:
        """Whether the key was first claimed (by a request other than a charge) before `position`: the charge or
        authorization whose transaction was created there lost the key to it."""
        return await self._begun_before(key_stream(command_id), position)

    async def _created_before(self, command_id: str, position: int) -> bool:
        return await self._begun_before(created_stream(command_id), position)

    async def _begun_before(self, stream: str, position: int) -> bool:
        """Whether `stream`'s first event was committed before global `position` (positions are commit order)."""
        recorded = await self._store.read(stream)
        return bool(recorded) and recorded[0].position < position

    async def _give_way(self, claimed: Claimed, metadata: Mapping[str, Any]) -> None:
        """The key's charge or authorization created its transaction before this claim: refuse, and record the
        refusal as this claim's response (a retry replays it)."""
        refusal = idempotency_mismatch(KEY_MADE_A_TRANSACTION)
        response = {"status": refusal.status, "body": refusal.body(), "headers": refusal.headers()}
        await self.record(claimed, response, metadata)
        raise refusal

    async def record(
        self, claimed: Claimed, response: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Store the response; returns what the key answers from now on (an earlier recorded one wins a race)."""
        data = {"status": response["status"], "body": response["body"], "headers": dict(response.get("headers", {}))}
        try:
            await self._store.append(
                key_stream(claimed.command_id), [NewEvent(RESPONSE_RECORDED, data, metadata)], claimed.version
            )
        except WrongExpectedVersion:
            state = await self.state(claimed.command_id)
            if state is not None and state.response is not None:
                return dict(state.response)
            raise
        return data

    async def release(
        self,
        claimed: Claimed,
        reason: str,
        metadata: Mapping[str, Any],
        retry_after_s: float | None = None,
        message: str | None = None,
    ) -> None:
        """The attempt ended without a response to keep: a retry may take over immediately, unless `begin` is told
        to hold it. `retry_after_s` and `message`: its answer's Retry-After and message (kept for the recovery
        sweep's wait, and for `retry_later`)."""
        data: dict[str, Any] = {"reason": reason}
        if retry_after_s is not None:
            data["retry_after"] = retry_after_s
        if message is not None:
            data["message"] = message
        event = NewEvent(KEY_RELEASED, data, metadata)
        with suppress(WrongExpectedVersion):  # someone else took over meanwhile: they own the key now
            await self._store.append(key_stream(claimed.command_id), [event], claimed.version)
