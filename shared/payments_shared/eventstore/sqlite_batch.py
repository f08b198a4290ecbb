"""The SQLite event store's write side: requests (appends, probes) and the connection that writes a batch of them
in one transaction, each append in its own savepoint so that one failure spares the rest.

The store (payments_shared.eventstore.sqlite) keeps two kinds of writer: one on each event loop's own thread,
which never waits for a lock (busy timeout 0), and one on a writer thread, which waits as long as the store's
busy timeout allows and takes every batch the first could not write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from payments_shared.eventstore.memory import AlreadyAppended, matching_position, resolve_append
from payments_shared.eventstore.port import ANY, STREAM_EXISTS, EventStoreError, EventStoreUnavailable
from payments_shared.sqlite_checkpoints import BACKSTOP_PAGES

logger = logging.getLogger(__name__)

INSERT: Final = (
    "INSERT INTO events (id, stream, version, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

EventRow = tuple[str, str, str, str]  # id, type, data JSON, metadata JSON


@dataclass
class Request:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


@dataclass
class Append(Request):
    stream: str
    expected_version: int
    ids: list[uuid.UUID]
    rows: list[EventRow]


@dataclass
class Probe(Request):
    """Rides in a batch: proves the writer can take the write lock and write (a row inserted, then rolled back)."""


@dataclass
class Outcome:
    request: Request
    result: Any = None
    error: BaseException | None = None


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection with the store's settings, in autocommit mode (transactions are explicit)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    connection.execute("PRAGMA synchronous = FULL")
    return connection


def unavailable(error: sqlite3.Error) -> EventStoreUnavailable:
    return EventStoreUnavailable(f"sqlite event store: {error}")


class BatchWriter:
    """One write connection (opened on first use, reopened after a failure) and the batches it writes."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._connection: sqlite3.Connection | None = None

    def write(self, batch: list[Request]) -> list[Outcome]:
        """Every request's outcome; a database failure fails the whole batch (logged)."""
        try:
            return self.transaction(batch)
        except sqlite3.Error as error:
            logger.warning("event store batch of %d failed: %s", len(batch), error)
            failure = unavailable(error)
            return [Outcome(request, error=failure) for request in batch]

    def transaction(self, batch: list[Request]) -> list[Outcome]:
        """One transaction for the batch. Raises sqlite3.Error (nothing written, connection reset) when the
        database fails; a failing append (wrong version, duplicate id) fails in its outcome only."""
        outcomes = self.begin(batch)
        self.finish(has_appends(batch))
        return outcomes

    def begin(self, batch: list[Request]) -> list[Outcome]:
        """Open the batch's transaction and apply every request, leaving it for `finish` to end. Raises
        sqlite3.Error (nothing written, connection reset) when the database fails."""
        try:
            connection = self._db()
            if not os.access(self._path, os.W_OK):  # an open descriptor would still write: honour the file's mode
                raise sqlite3.OperationalError("attempt to write a readonly database (the file is not writable)")
            connection.execute("BEGIN IMMEDIATE")
            try:
                now = datetime.now(UTC).isoformat()
                return [_apply(connection, request, now) for request in batch]
            except BaseException:
                _roll_back(connection)
                raise
        except sqlite3.Error:
            self.close()  # reconnect on the next batch, so a recovered file is seen
            raise

    def finish(self, commit: bool) -> None:
        """Commit what `begin` applied (or roll it back: a batch of probes only). May run on another thread than
        `begin`, never at the same time. Raises sqlite3.Error (nothing written, connection reset)."""
        connection = self._connection
        try:
            if connection is None or not connection.in_transaction:
                raise sqlite3.OperationalError("no transaction to finish (the connection was reset)")
            connection.execute("COMMIT" if commit else "ROLLBACK")
        except sqlite3.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            _roll_back(self._connection)
            self._connection.close()
            self._connection = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = connect(self._path, self._busy_timeout_ms)
            # Checkpoints (which fsync the database file) run on the store's checkpointer thread, off the commit
            # path; this high threshold is only a backstop should that thread fall behind.
            self._connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        return self._connection


def has_appends(batch: list[Request]) -> bool:
    return any(isinstance(request, Append) for request in batch)


def _roll_back(connection: sqlite3.Connection) -> None:
    try:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
    except sqlite3.Error as error:
        logger.warning("event store rollback failed: %s", error)


def _apply(connection: sqlite3.Connection, request: Request, now: str) -> Outcome:
    if not isinstance(request, Append):
        _probe(connection)
        return Outcome(request)
    # A failing statement undoes itself, so one row needs no savepoint; several need one, so that a failing row
    # undoes the rows before it (and only them: the batch's other appends stay).
    guarded = len(request.rows) > 1
    if guarded:
        connection.execute("SAVEPOINT append")
    try:
        position = _append(connection, request, now)
    except sqlite3.IntegrityError as error:
        _undo(connection, guarded)
        return Outcome(request, error=EventStoreError(f"stream {request.stream!r}: {error}"))
    except sqlite3.Error:
        raise  # a database failure fails the whole batch
    except Exception as error:  # WrongExpectedVersion and friends, raised before any row: this append only
        _undo(connection, guarded)
        return Outcome(request, error=error)
    if guarded:
        connection.execute("RELEASE append")
    return Outcome(request, result=position)


def _undo(connection: sqlite3.Connection, guarded: bool) -> None:
    if guarded:
        connection.execute("ROLLBACK TO append")
        connection.execute("RELEASE append")


def _probe(connection: sqlite3.Connection) -> None:
    """A real write, undone: BEGIN IMMEDIATE alone succeeds on a read-only file. Raises like an append would."""
    connection.execute("SAVEPOINT probe")
    try:
        connection.execute(INSERT, (str(uuid.uuid4()), "$probe", 0, "$probe", "{}", "{}", ""))
    finally:
        connection.execute("ROLLBACK TO probe")
        connection.execute("RELEASE probe")


def _append(connection: sqlite3.Connection, request: Append, now: str) -> int:
    stream = request.stream
    (current,) = connection.execute("SELECT MAX(version) FROM events WHERE stream = ?", (stream,)).fetchone()
    already_at = _already_at(connection, request, current)
    decision = resolve_append(stream, request.expected_version, current, already_at)
    if isinstance(decision, AlreadyAppended):
        return decision.position
    if not request.rows:
        (last,) = connection.execute("SELECT MAX(position) FROM events WHERE stream = ?", (stream,)).fetchone()
        return int(last or 0)
    position = 0
    for offset, (event_id, type_, data, metadata) in enumerate(request.rows):
        cursor = connection.execute(
            INSERT, (event_id, stream, decision.first_version + offset, type_, data, metadata, now)
        )
        position = cursor.lastrowid or 0
    return position


def _already_at(connection: sqlite3.Connection, request: Append, current: int | None) -> int | None:
    """The position of these very events if the stream already holds them at the idempotency start."""
    expected, ids = request.expected_version, request.ids
    if current is None or not ids:
        return None
    if expected in (ANY, STREAM_EXISTS):
        found = connection.execute(
            "SELECT version FROM events WHERE id = ? AND stream = ?", (str(ids[0]), request.stream)
        ).fetchone()
        if found is None:
            return None
        start = int(found[0])
    elif current == expected:
        return None
    else:
        start = expected + 1
    window = connection.execute(
        "SELECT id, position FROM events WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?",
        (request.stream, start, len(ids)),
    ).fetchall()
    return matching_position(ids, [(uuid.UUID(event_id), position) for event_id, position in window])
