"""SQLite event store: the embedded default. One file, WAL, durable commits, shareable by several processes.

Writes go through one writer thread per store that batches concurrent appends into one transaction (group
commit: one fsync for many appends). Reads run on a small pool of reader threads with their own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from payments_shared.eventstore.memory import AlreadyAppended, matching_position, resolve_append
from payments_shared.eventstore.port import (
    ANY,
    STREAM_EXISTS,
    EventStoreError,
    EventStoreUnavailable,
    NewEvent,
    RecordedEvent,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    stream      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    UNIQUE (stream, version)
)
"""
COLUMNS: Final = "position, id, stream, version, type, data, metadata, recorded_at"
INSERT: Final = (
    "INSERT INTO events (id, stream, version, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
MAX_BATCH: Final = 512
PAGE_SIZE: Final = 500
POLL_INTERVAL_S: Final = 0.1
SUBSCRIPTION_LINGER_S: Final = 0.02
DECODED_KEPT: Final = 2048
SUBSCRIPTION_RETRY_S: Final = 1.0
READER_THREADS: Final = 2
CHECKPOINT_EVERY_S: Final = 0.25
BACKSTOP_CHECKPOINT_PAGES: Final = 50_000

Row = tuple[int, str, str, int, str, str, str, str]
EventRow = tuple[str, str, str, str]  # id, type, data JSON, metadata JSON


@dataclass
class _Request:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


@dataclass
class _Append(_Request):
    stream: str
    expected_version: int
    ids: list[uuid.UUID]
    rows: list[EventRow]


@dataclass
class _Probe(_Request):
    """Rides in a batch: proves the writer can take the write lock and write (a row inserted, then rolled back)."""


@dataclass
class _Outcome:
    request: _Request
    result: Any = None
    error: BaseException | None = None


@dataclass
class _LoopWaiters:
    """Per event loop: the event that in-process appends set to wake that loop's subscribers."""

    appended: asyncio.Event = field(default_factory=asyncio.Event)


_STOP: Final = object()


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection with the store's settings, in autocommit mode (transactions are explicit)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    connection.execute("PRAGMA synchronous = FULL")
    return connection


def unavailable(error: sqlite3.Error) -> EventStoreUnavailable:
    return EventStoreUnavailable(f"sqlite event store: {error}")


def to_recorded(row: Row) -> RecordedEvent:
    position, event_id, stream, version, type_, data, metadata, recorded_at = row
    return RecordedEvent(
        id=uuid.UUID(event_id),
        stream=stream,
        type=type_,
        data=json.loads(data),
        metadata=json.loads(metadata),
        version=version,
        position=position,
        recorded_at=datetime.fromisoformat(recorded_at),
    )


class Checkpointer:
    """Copies the WAL into the database file in the background (PASSIVE: never blocks the writer or readers)."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self.wanted = threading.Event()  # set after commits
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"eventstore-checkpointer:{path}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wanted.set()
        self._thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        while not self._stopping.wait(CHECKPOINT_EVERY_S):
            if not self.wanted.wait(1.0) or self._stopping.is_set():
                continue
            self.wanted.clear()
            try:
                connection = connection or connect(self._path, self._busy_timeout_ms)
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as error:
                logger.debug("event store checkpoint skipped: %s", error)
                if connection is not None:
                    connection.close()
                    connection = None
        if connection is not None:
            connection.close()


class SqliteEventStore:
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self._path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._create_schema()
        self._requests: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._writer_connection: sqlite3.Connection | None = None
        self._writer = threading.Thread(target=self._run_writer, name=f"eventstore-writer:{self._path}", daemon=True)
        self._checkpointer = Checkpointer(self._path, busy_timeout_ms)
        self._writer.start()
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="eventstore-reader")
        self._reader_local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._waiters: dict[asyncio.AbstractEventLoop, _LoopWaiters] = {}
        self._closed = False
        self._recent: dict[int, RecordedEvent] = {}  # position → event, the newest DECODED_KEPT, oldest first

    def _decoded(self, row: Row) -> RecordedEvent:
        """The row as an event, decoded once: every subscriber (each list projection, the recovery scan) and the
        worker's own reads ask for the same fresh events within moments. Events are immutable, and readers share
        event objects as with the in-memory store."""
        recent = self._recent
        event = recent.get(row[0])
        if event is None:
            event = recent[row[0]] = to_recorded(row)
            if len(recent) > DECODED_KEPT:
                recent.pop(next(iter(recent)), None)
        return event

    # ---- the port -------------------------------------------------------------------------------------------

    async def append(self, stream: str, events: Sequence[NewEvent], expected_version: int) -> int:
        rows = [(str(event.id), event.type, json.dumps(event.data), json.dumps(event.metadata)) for event in events]
        request = _Append(*self._new_future(), stream, expected_version, [event.id for event in events], rows)
        position: int = await self._submit(request)
        return position

    async def read(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version >= ? ORDER BY version"
        rows: list[Row] = await self._read(lambda db: db.execute(sql, (stream, from_version)).fetchall())
        return [self._decoded(row) for row in rows]

    async def read_all(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        after = from_position - 1
        while True:
            page = await self._page_after(after)
            for event in page:
                yield event
            if len(page) < PAGE_SIZE:
                return
            after = page[-1].position

    async def subscribe(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        # Commit order equals position order: positions are assigned inside the write transaction and SQLite
        # admits one writer at a time (BEGIN IMMEDIATE, across processes too), so once a reader sees position p,
        # every lower position is already committed. Following `position > last seen` therefore never skips.
        waiters = self._waiters_of(asyncio.get_running_loop())
        after = from_position - 1
        while not self._closed:
            appended = waiters.appended  # taken before reading, so an append after the read still wakes us
            try:
                page = await self._page_after(after)
            except EventStoreUnavailable as error:
                if self._closed:
                    return
                logger.warning("event store subscription read failed, retrying: %s", error)
                await asyncio.sleep(SUBSCRIPTION_RETRY_S)
                continue
            for event in page:
                yield event
            if page:
                after = page[-1].position
            if len(page) < PAGE_SIZE:
                with contextlib.suppress(TimeoutError):  # other processes' appends: polled
                    await asyncio.wait_for(appended.wait(), POLL_INTERVAL_S)
                    # Woken by an append: let the appends of the next moments join it, so that under load a
                    # subscriber reads (and decodes) one page per interval, not one per append.
                    await asyncio.sleep(SUBSCRIPTION_LINGER_S)

    async def ping(self) -> None:
        await self._read(lambda db: db.execute("SELECT MAX(position) FROM events").fetchone())
        await self._submit(_Probe(*self._new_future()))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._requests.put(_STOP)
        await asyncio.to_thread(self._writer.join)
        self._fail_pending()  # a request that raced with close() after the writer's last look at the queue
        await asyncio.to_thread(self._checkpointer.stop)
        await asyncio.to_thread(self._readers.shutdown, True)
        with self._lock:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
        with self._lock:
            subscribed = list(self._waiters.items())
        for loop, waiters in subscribed:  # subscriptions end at their next wake-up
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(waiters.appended.set)

    # ---- loop side ------------------------------------------------------------------------------------------

    def _new_future(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        return loop, loop.create_future()

    async def _submit(self, request: _Request) -> Any:
        if self._closed:
            raise EventStoreUnavailable("sqlite event store is closed")
        self._requests.put(request)
        return await request.future

    def _waiters_of(self, loop: asyncio.AbstractEventLoop) -> _LoopWaiters:
        with self._lock:
            return self._waiters.setdefault(loop, _LoopWaiters())

    def _deliver(self, loop: asyncio.AbstractEventLoop, outcomes: list[_Outcome], wake: bool) -> None:
        """Runs on `loop`: resolve the batch's futures, then wake this loop's subscribers."""
        for outcome in outcomes:
            future = outcome.request.future
            if future.done():
                continue  # the caller gave up (cancelled); the append itself stands
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.result)
        with self._lock:
            waiters = self._waiters.get(loop) if wake else None
        if waiters is not None:
            woken, waiters.appended = waiters.appended, asyncio.Event()
            woken.set()

    async def _page_after(self, after: int) -> list[RecordedEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT {PAGE_SIZE}"
        rows: list[Row] = await self._read(lambda db: db.execute(sql, (after,)).fetchall())
        return [self._decoded(row) for row in rows]

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise EventStoreUnavailable("sqlite event store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, partial(self._run_read, query))
        except RuntimeError as error:
            if not self._closed:
                raise
            raise EventStoreUnavailable("sqlite event store is closed") from error  # close() shut the pool down

    # ---- reader threads -------------------------------------------------------------------------------------

    def _run_read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        connection: sqlite3.Connection | None = getattr(self._reader_local, "connection", None)
        try:
            if connection is None:
                connection = connect(self._path, self._busy_timeout_ms)
                connection.execute("PRAGMA query_only = ON")
                self._reader_local.connection = connection
                with self._lock:
                    self._reader_connections.append(connection)
            return query(connection)
        except sqlite3.Error as error:
            self._drop_reader(connection)
            raise unavailable(error) from error

    def _drop_reader(self, connection: sqlite3.Connection | None) -> None:
        """Forget a reader connection after an error: the next read opens a fresh one."""
        self._reader_local.connection = None
        if connection is None:
            return
        with self._lock:
            if connection in self._reader_connections:
                self._reader_connections.remove(connection)
        connection.close()

    # ---- the writer thread ----------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        try:
            connection = connect(self._path, self._busy_timeout_ms)
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute(SCHEMA)
            finally:
                connection.close()
        except sqlite3.Error as error:
            raise unavailable(error) from error

    def _run_writer(self) -> None:
        stopping = False
        while not stopping:
            first = self._requests.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._requests.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._hand_back(self._write_batch([request for request in batch if isinstance(request, _Request)]))
        self._fail_pending()
        if self._writer_connection is not None:
            self._writer_connection.close()

    def _write_batch(self, batch: list[_Request]) -> list[_Outcome]:
        """One transaction for the whole batch; each append in its own savepoint so one failure spares the rest."""
        try:
            connection = self._writer_db()
            if not os.access(self._path, os.W_OK):  # an open descriptor would still write: honour the file's mode
                raise sqlite3.OperationalError("attempt to write a readonly database (the file is not writable)")
            connection.execute("BEGIN IMMEDIATE")
            try:
                now = datetime.now(UTC).isoformat()
                outcomes = [self._apply(connection, request, now) for request in batch]
                has_appends = any(isinstance(request, _Append) for request in batch)
                connection.execute("COMMIT" if has_appends else "ROLLBACK")
            except BaseException:
                self._roll_back(connection)
                raise
        except sqlite3.Error as error:
            logger.warning("event store batch of %d failed: %s", len(batch), error)
            self._reset_writer()
            failure = unavailable(error)
            return [_Outcome(request, error=failure) for request in batch]
        return outcomes

    def _apply(self, connection: sqlite3.Connection, request: _Request, now: str) -> _Outcome:
        if not isinstance(request, _Append):
            self._probe(connection)
            return _Outcome(request)
        connection.execute("SAVEPOINT append")
        try:
            position = self._append(connection, request, now)
        except sqlite3.IntegrityError as error:
            connection.execute("ROLLBACK TO append")
            connection.execute("RELEASE append")
            return _Outcome(request, error=EventStoreError(f"stream {request.stream!r}: {error}"))
        except sqlite3.Error:
            raise  # a database failure fails the whole batch
        except Exception as error:  # WrongExpectedVersion and friends: this append only
            connection.execute("ROLLBACK TO append")
            connection.execute("RELEASE append")
            return _Outcome(request, error=error)
        connection.execute("RELEASE append")
        return _Outcome(request, result=position)

    def _probe(self, connection: sqlite3.Connection) -> None:
        """A real write, undone: BEGIN IMMEDIATE alone succeeds on a read-only file. Raises like an append would."""
        connection.execute("SAVEPOINT probe")
        try:
            connection.execute(INSERT, (str(uuid.uuid4()), "$probe", 0, "$probe", "{}", "{}", ""))
        finally:
            connection.execute("ROLLBACK TO probe")
            connection.execute("RELEASE probe")

    def _append(self, connection: sqlite3.Connection, request: _Append, now: str) -> int:
        stream = request.stream
        (current,) = connection.execute("SELECT MAX(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        already_at = self._already_at(connection, request, current)
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

    def _already_at(self, connection: sqlite3.Connection, request: _Append, current: int | None) -> int | None:
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

    def _writer_db(self) -> sqlite3.Connection:
        if self._writer_connection is None:
            self._writer_connection = connect(self._path, self._busy_timeout_ms)
            # Checkpoints (which fsync the database file) run on the checkpointer thread, off the commit path;
            # this high threshold is only a backstop should that thread fall behind.
            self._writer_connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
        return self._writer_connection

    def _roll_back(self, connection: sqlite3.Connection) -> None:
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            logger.warning("event store rollback failed: %s", error)

    def _reset_writer(self) -> None:
        """After a database failure (locked, read-only, I/O): reconnect on the next batch, so recovery is seen."""
        if self._writer_connection is not None:
            self._roll_back(self._writer_connection)
            self._writer_connection.close()
            self._writer_connection = None

    def _hand_back(self, outcomes: list[_Outcome]) -> None:
        """Resolve futures on their own loops (one wake-up per loop), and wake every loop's subscribers."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = defaultdict(list)
        for outcome in outcomes:
            by_loop[outcome.request.loop].append(outcome)
        appended = any(outcome.error is None and isinstance(outcome.request, _Append) for outcome in outcomes)
        if appended:
            self._checkpointer.wanted.set()
        with self._lock:
            subscriber_loops = list(self._waiters) if appended else []
        for loop in subscriber_loops:
            by_loop.setdefault(loop, [])
        for loop, loop_outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._deliver, loop, loop_outcomes, appended)
            except RuntimeError:
                with self._lock:
                    self._waiters.pop(loop, None)  # that loop is closed

    def _fail_pending(self) -> None:
        leftovers: list[_Outcome] = []
        while True:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Request):
                leftovers.append(_Outcome(item, error=EventStoreUnavailable("sqlite event store is closed")))
        self._hand_back(leftovers)
