"""KurrentDB / EventStoreDB event store through kurrentdbclient's AsyncKurrentDBClient (production adapter).

Positions are `$all` commit positions (not contiguous). System events (`$…` types or streams) are never yielded.
Metadata is stored as JSON, so `$correlationId` / `$causationId` are where KurrentDB's system projections look.
Idempotent appends are the server's own (same event ids at the same expected version → same commit position).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kurrentdbclient import AsyncKurrentDBClient, StreamState
from kurrentdbclient import NewEvent as KurrentNewEvent
from kurrentdbclient import RecordedEvent as KurrentRecordedEvent
from kurrentdbclient.exceptions import (
    DeadlineExceededError,
    DiscoveryFailedError,
    GrpcError,
    InvalidCommitPositionError,
    KurrentDBClientError,
    NodeIsNotLeaderError,
    NotFoundError,
    ProgrammingError,
    WrongCurrentVersionError,
)

from payments_shared.eventstore.port import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    EventStoreError,
    EventStoreUnavailable,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)

logger = logging.getLogger(__name__)

STREAM_STATES: dict[int, StreamState] = {
    NO_STREAM: StreamState.NO_STREAM,
    ANY: StreamState.ANY,
    STREAM_EXISTS: StreamState.EXISTS,
}
RESUBSCRIBE_AFTER_S = 1.0
# A node that is not the leader cannot be written (a follower, or any node during an election), as the port's
# EventStoreUnavailable says; kurrentdbclient re-raises it when its one reconnection to the leader did not help.
UNAVAILABLE = (GrpcError, DeadlineExceededError, DiscoveryFailedError, NodeIsNotLeaderError, OSError)


def current_version_of(expected_version: int) -> int | StreamState:
    if expected_version >= 0:
        return expected_version
    if expected_version in STREAM_STATES:
        return STREAM_STATES[expected_version]
    raise EventStoreError(f"invalid expected version {expected_version}")


def to_kurrent(event: NewEvent) -> KurrentNewEvent:
    return KurrentNewEvent(
        type=event.type,
        data=json.dumps(event.data).encode(),
        metadata=json.dumps(event.metadata).encode(),
        content_type="application/json",
        id=event.id,
    )


def from_kurrent(event: KurrentRecordedEvent) -> RecordedEvent:
    return RecordedEvent(
        id=uuid.UUID(str(event.id)),
        stream=event.stream_name,
        type=event.type,
        data=json.loads(event.data) if event.data else {},
        metadata=json.loads(event.metadata) if event.metadata else {},
        version=event.stream_position,
        position=event.commit_position,  # kurrentdbclient reads one for every event (it asserts so)
        recorded_at=event.recorded_at or datetime.now(UTC),
    )


def is_system(event: KurrentRecordedEvent) -> bool:
    return event.type.startswith("$") or event.stream_name.startswith("$")


def translate(error: KurrentDBClientError, stream: str = "", expected: int = 0) -> EventStoreError:
    if isinstance(error, WrongCurrentVersionError):
        actual = error.actual_version if isinstance(error.actual_version, int) else None
        return WrongExpectedVersion(stream, expected, actual)
    if isinstance(error, UNAVAILABLE):
        return EventStoreUnavailable(f"kurrentdb: {error}")
    return EventStoreError(f"kurrentdb: {error}")


class KurrentEventStore:
    def __init__(self, uri: str) -> None:
        self._client = AsyncKurrentDBClient(uri=uri)  # connects on first use (and reconnects on its own)
        self._closed = False

    async def append(self, stream: str, events: Sequence[NewEvent], expected_version: int) -> int:
        try:
            position: int = await self._client.append_to_stream(
                stream,
                events=[to_kurrent(event) for event in events],
                current_version=current_version_of(expected_version),
            )
        except KurrentDBClientError as error:
            raise translate(error, stream, expected_version) from error
        except UNAVAILABLE as error:
            raise EventStoreUnavailable(f"kurrentdb: {error}") from error
        return position

    async def read(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        try:
            response = await self._client.read_stream(stream, stream_position=max(from_version, 0))
            return [from_kurrent(event) async for event in response]
        except NotFoundError:
            return []
        except KurrentDBClientError as error:
            raise translate(error, stream) from error

    async def read_all(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        async for event in self._read_all_from(from_position, _Cursor()):
            yield event

    async def subscribe(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        """Forever: a lost connection is logged and the subscription resumes after the last event it yielded."""
        next_position = from_position
        while not self._closed:  # a live subscription only ends when the client closes (or on an error)
            try:
                async for event in self._subscribe_once(next_position):
                    next_position = event.position + 1
                    yield event
            except EventStoreError as error:
                if self._closed:
                    return
                if not isinstance(error, EventStoreUnavailable):
                    raise
                logger.warning("kurrentdb subscription lost, resuming at %d: %s", next_position, error)
                await asyncio.sleep(RESUBSCRIBE_AFTER_S)

    async def _subscribe_once(self, from_position: int) -> AsyncIterator[RecordedEvent]:
        cursor = _Cursor()
        async for event in self._read_all_from(from_position, cursor):
            yield event
        # Live: a catch-up subscription strictly after the last commit position the catch-up read reached.
        try:
            subscription = await self._client.subscribe_to_all(commit_position=cursor.last)
        except KurrentDBClientError as error:
            raise translate(error) from error
        try:
            async for recorded in subscription:
                if not is_system(recorded) and recorded.commit_position >= from_position:
                    yield from_kurrent(recorded)
        except KurrentDBClientError as error:
            raise translate(error) from error
        finally:
            with contextlib.suppress(Exception):  # best-effort cleanup; the channel may already be closed
                await subscription.stop()

    async def ping(self) -> None:
        try:
            await self._client.get_commit_position()
        except KurrentDBClientError as error:
            raise EventStoreUnavailable(f"kurrentdb: {error}") from error
        except UNAVAILABLE as error:
            raise EventStoreUnavailable(f"kurrentdb: {error}") from error

    async def close(self) -> None:
        self._closed = True
        # The client connects lazily; closing one that never reached a server raises ProgrammingError.
        with contextlib.suppress(ProgrammingError):
            await self._client.close()

    async def _read_all_from(self, from_position: int, cursor: _Cursor) -> AsyncIterator[RecordedEvent]:
        """Events with position >= from_position. KurrentDB starts reads only at existing commit positions, so
        start at from_position - 1 (the usual resume point is last position + 1), else at from_position."""
        starts: list[int | None] = [None] if from_position <= 0 else [from_position - 1, from_position]
        for attempt, start in enumerate(starts):
            try:
                async for event in self._read_all_at(start, from_position, cursor):
                    yield event
                return
            except InvalidCommitPositionError as error:
                if attempt == len(starts) - 1:
                    raise EventStoreError(f"kurrentdb: no commit position at {from_position}") from error
            except KurrentDBClientError as error:
                raise translate(error) from error

    async def _read_all_at(
        self, start: int | None, from_position: int, cursor: _Cursor
    ) -> AsyncIterator[RecordedEvent]:
        response = await self._client.read_all(commit_position=start)
        cursor.last = start
        try:
            async for recorded in response:
                cursor.last = recorded.commit_position
                if not is_system(recorded) and recorded.commit_position >= from_position:
                    yield from_kurrent(recorded)
        finally:
            with contextlib.suppress(Exception):  # best-effort cleanup; the channel may already be closed
                await response.stop()


@dataclass
class _Cursor:
    """The last commit position a read reached (or started at): where a live subscription continues."""

    last: int | None = None
