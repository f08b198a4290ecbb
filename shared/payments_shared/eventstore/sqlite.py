"""SQLite event store: the embedded default. One file, WAL, durable commits, shareable by several processes.

Appends are group-committed: those made during one turn of an event loop are written in one transaction (one
fsync). The loop's own thread opens it and applies the appends (Python work: handing it to another thread would
cost more than the work, as the threads contend for the GIL); only the COMMIT, which waits for the fsync with
the GIL released, runs on the committer thread, so the loop serves other requests meanwhile instead of stalling
for the disk (at a few hundred charges a second, fsync stalls were the largest share of the p99). While a loop's
commit is in flight, its next turns' appends wait and then go together in the next transaction. Reads run on
the loop's thread too: a WAL read never waits for anyone. What would wait — the write lock held by another
process, a locked file — is never waited for on the loop: such a batch goes to the writer thread, and such a
read to the reader threads, which wait as long as the busy timeout allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from payments_shared import jsoncodec
from payments_shared.eventstore.port import EventStoreUnavailable, NewEvent, RecordedEvent, UnreadableEvent
from payments_shared.eventstore.sqlite_batch import (
    INSERT,
    Append,
    BatchWriter,
    Outcome,
    Probe,
    Request,
    connect,
    has_appends,
    unavailable,
)
from payments_shared.per_thread import PerThread
from payments_shared.per_turn import TurnBatches
from payments_shared.sqlite_checkpoints import Checkpointer
from payments_shared.sqlite_setup import set_up

__all__ = ["INSERT", "SCHEMA", "SqliteEventStore", "connect"]

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
MAX_BATCH: Final = 512
PAGE_SIZE: Final = 500
POLL_INTERVAL_S: Final = 0.1
SUBSCRIPTION_LINGER_S: Final = 0.02
DECODED_KEPT: Final = 8192
SUBSCRIPTION_RETRY_S: Final = 1.0
READER_THREADS: Final = 2

Row = tuple[int, str, str, int, str, str, str, str]


@dataclass
class _LoopWaiters:
    """Per event loop: the event that in-process appends set to wake that loop's subscribers, and when the last
    one did (its subscribers read together at that moment + SUBSCRIPTION_LINGER_S)."""

    appended: asyncio.Event = field(default_factory=asyncio.Event)
    woken_at: float = 0.0


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """Until the loop's clock reads `when`: timers of the same `when` run in the same turn (asyncio.sleep(delay)
    would give each sleeper its own, microseconds apart)."""
    woken: asyncio.Future[None] = loop.create_future()
    timer = loop.call_at(when, lambda: None if woken.done() else woken.set_result(None))
    try:
        await woken
    finally:
        timer.cancel()


_STOP: Final = object()


def to_recorded(row: Row) -> RecordedEvent:
    position, event_id, stream, version, type_, data, metadata, recorded_at = row
    try:
        return RecordedEvent(
            id=uuid.UUID(event_id),
            stream=stream,
            type=type_,
            data=jsoncodec.loads(data),
            metadata=jsoncodec.loads(metadata),
            version=version,
            position=position,
            recorded_at=datetime.fromisoformat(recorded_at),
        )
    except (ValueError, TypeError) as error:
        raise UnreadableEvent(
            f"the event at position {position} (stream {stream!r}) is not readable: {error}"
        ) from None


class SqliteEventStore:
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self._path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._create_schema()
        self._turn_batches: TurnBatches[Request] = TurnBatches(self._commit_turn)
        self._loop_writers = PerThread(lambda: BatchWriter(self._path, busy_timeout_ms=0), BatchWriter.close)
        self._loop_readers = PerThread(lambda: self._reader(busy_timeout_ms=0), sqlite3.Connection.close)
        self._requests: queue.SimpleQueue[Request | object] = queue.SimpleQueue()  # for the writer thread
        self._thread_writer = BatchWriter(self._path, busy_timeout_ms)
        self._writer = threading.Thread(target=self._run_writer, name=f"eventstore-writer:{self._path}", daemon=True)
        self._checkpointer = Checkpointer(self._path, busy_timeout_ms)
        self._writer.start()
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="eventstore-reader")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="eventstore-committer")
        # Per loop whose commit is in flight: the requests of its later turns, written once that commit is done.
        self._held: dict[asyncio.AbstractEventLoop, list[Request]] = {}
        self._thread_readers = PerThread(lambda: self._reader(busy_timeout_ms), sqlite3.Connection.close)
        self._lock = threading.Lock()
        self._waiters: dict[asyncio.AbstractEventLoop, _LoopWaiters] = {}
        self._closed = False
        self._recent: dict[int, RecordedEvent] = {}  # position → event, the newest DECODED_KEPT, oldest first
        # Per loop: the pages read in its current turn, by the position they follow (see `_page_after`).
        self._turn_pages: dict[asyncio.AbstractEventLoop, dict[int, list[RecordedEvent]]] = {}

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
        rows = [
            (str(event.id), event.type, jsoncodec.dumps(event.data), jsoncodec.dumps(event.metadata))
            for event in events
        ]
        request = Append(*self._new_future(), stream, expected_version, [event.id for event in events], rows)
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
            await asyncio.sleep(0)  # reads finish on the loop: let others run between pages of a long read

    async def subscribe(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        # Commit order equals position order: positions are assigned inside the write transaction and SQLite
        # admits one writer at a time (BEGIN IMMEDIATE, across processes too), so once a reader sees position p,
        # every lower position is already committed. Following `position > last seen` therefore never skips.
        loop = asyncio.get_running_loop()
        waiters = self._waiters_of(loop)
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
            if len(page) == PAGE_SIZE:
                await asyncio.sleep(0)  # catching up: let others run between pages
            else:
                with contextlib.suppress(TimeoutError):  # other processes' appends: polled
                    # Not wait_for: on 3.11 it swallows a cancellation that arrives as an append wakes it, and
                    # the subscription (and whoever awaits its end) would go on as if never cancelled.
                    async with asyncio.timeout(POLL_INTERVAL_S):
                        await appended.wait()
                    # Woken by an append: let the appends of the next moments join it, so that under load a
                    # subscriber reads (and decodes) one page per interval, not one per append; all of this
                    # loop's subscribers read in the same turn, and share that read (`_page_after`).
                    await _sleep_until(loop, waiters.woken_at + SUBSCRIPTION_LINGER_S)

    async def ping(self) -> None:
        await self._read(lambda db: db.execute("SELECT MAX(position) FROM events").fetchone())
        await self._submit(Probe(*self._new_future()))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._requests.put(_STOP)
        await asyncio.to_thread(self._committer.shutdown, True)  # the commits in flight end first
        await asyncio.to_thread(self._writer.join)
        self._fail_pending()  # a request that raced with close() after the writer's last look at the queue
        await asyncio.to_thread(self._checkpointer.stop)
        await asyncio.to_thread(self._readers.shutdown, True)
        for connections in (self._thread_readers, self._loop_readers, self._loop_writers):
            connections.close_all()
        with self._lock:
            subscribed = list(self._waiters.items())
        for loop, waiters in subscribed:  # subscriptions end at their next wake-up
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(waiters.appended.set)

    # ---- loop side ------------------------------------------------------------------------------------------

    def _new_future(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        return loop, loop.create_future()

    async def _submit(self, request: Request) -> Any:
        if self._closed:
            raise EventStoreUnavailable("sqlite event store is closed")
        self._turn_batches.add(request.loop, request)
        return await request.future

    def _commit_turn(self, loop: asyncio.AbstractEventLoop, batch: list[Request]) -> None:
        """At the end of the loop's turn: its appends in one transaction, after the one in flight if any."""
        held = self._held.get(loop)
        if held is not None:
            held.extend(batch)
        else:
            self._write(loop, batch)

    def _write(self, loop: asyncio.AbstractEventLoop, batch: list[Request]) -> None:
        """Apply the batch on this (the loop's) thread and hand its COMMIT to the committer thread — unless the
        write lock is held elsewhere (another process, this store's writer thread) or the file fails: the writer
        thread then takes the batch."""
        if self._closed:
            self._to_writer_thread(batch)  # fails them
            return
        writer = self._loop_writers.get()
        try:
            outcomes = writer.begin(batch)
        except sqlite3.Error:
            self._to_writer_thread(batch)
            return
        if not has_appends(batch):  # probes only: they proved the lock and the write, nothing to keep
            try:
                writer.finish(commit=False)
            except sqlite3.Error:
                self._to_writer_thread(batch)
                return
            self._hand_back(outcomes, here=loop)
            return
        self._held[loop] = []
        committed = loop.run_in_executor(self._committer, writer.finish, True)
        committed.add_done_callback(lambda done: self._committed(loop, batch, outcomes, done))

    def _committed(
        self, loop: asyncio.AbstractEventLoop, batch: list[Request], outcomes: list[Outcome], done: asyncio.Future[None]
    ) -> None:
        """Runs on `loop` once its commit ended: resolve the batch, then write what was held meanwhile."""
        if done.cancelled() or done.exception() is not None:
            # Nothing of the batch was kept: the writer thread writes it again (or reports the failure).
            logger.warning("event store commit failed, retrying on the writer thread: %r", done)
            self._to_writer_thread(batch)
        else:
            self._hand_back(outcomes, here=loop)
        held = self._held.pop(loop, [])
        if held:
            self._write(loop, held)

    def _to_writer_thread(self, batch: list[Request]) -> None:
        if self._closed:  # the writer thread may have stopped: fail them here
            self._hand_back(
                [Outcome(request, error=EventStoreUnavailable("sqlite event store is closed")) for request in batch]
            )
            return
        for request in batch:
            self._requests.put(request)

    def _waiters_of(self, loop: asyncio.AbstractEventLoop) -> _LoopWaiters:
        with self._lock:
            return self._waiters.setdefault(loop, _LoopWaiters())

    def _deliver(self, loop: asyncio.AbstractEventLoop, outcomes: list[Outcome], wake: bool) -> None:
        """Runs on `loop`: resolve the batch's futures, then wake this loop's subscribers."""
        if wake:
            self._turn_pages.pop(loop, None)  # read from now on, a page holds these appends
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
            waiters.woken_at = loop.time()
            woken.set()

    async def _page_after(self, after: int) -> list[RecordedEvent]:
        """The events after position `after` (a page). Every subscriber of a loop is woken by the same appends and
        asks for the same page in the same turn (the list projections, the sweeps' followers): the page read
        first in a turn is the answer to the others, until the turn ends or an append of this loop is delivered.
        A page read a moment earlier is still every event up to its last (commits land in position order)."""
        loop = asyncio.get_running_loop()
        page = self._turn_pages.get(loop, {}).get(after)
        if page is None:
            sql = f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT {PAGE_SIZE}"
            rows: list[Row] = await self._read(lambda db: db.execute(sql, (after,)).fetchall())
            page = [self._decoded(row) for row in rows]
            self._keep_for_turn(loop, after, page)
        return page

    def _keep_for_turn(self, loop: asyncio.AbstractEventLoop, after: int, page: list[RecordedEvent]) -> None:
        pages = self._turn_pages.get(loop)
        if pages is None:
            pages = self._turn_pages[loop] = {}
            loop.call_soon(self._turn_pages.pop, loop, None)
        pages[after] = page

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise EventStoreUnavailable("sqlite event store is closed")
        try:
            return query(self._loop_readers.get())
        except sqlite3.Error:  # busy (a lock elsewhere) or failing: a reader thread waits for it, or reports it
            self._loop_readers.drop()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, partial(self._run_read, query))
        except RuntimeError as error:
            if not self._closed:
                raise
            raise EventStoreUnavailable("sqlite event store is closed") from error  # close() shut the pool down

    # ---- reader threads -------------------------------------------------------------------------------------

    def _run_read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return query(self._thread_readers.get())
        except sqlite3.Error as error:
            self._thread_readers.drop()  # the next read opens a fresh connection
            raise unavailable(error) from error

    def _reader(self, busy_timeout_ms: int) -> sqlite3.Connection:
        connection = connect(self._path, busy_timeout_ms)
        connection.execute("PRAGMA query_only = ON")
        return connection

    # ---- the writer thread ----------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        try:
            connection = connect(self._path, self._busy_timeout_ms)
            try:
                set_up(connection, lambda db: db.execute(SCHEMA))
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
            self._hand_back(self._thread_writer.write([request for request in batch if isinstance(request, Request)]))
        self._fail_pending()
        self._thread_writer.close()

    def _hand_back(self, outcomes: list[Outcome], here: asyncio.AbstractEventLoop | None = None) -> None:
        """Resolve futures on their own loops (one wake-up per other loop; at once on `here`, the running one),
        and wake every loop's subscribers."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = defaultdict(list)
        for outcome in outcomes:
            by_loop[outcome.request.loop].append(outcome)
        appended = any(outcome.error is None and isinstance(outcome.request, Append) for outcome in outcomes)
        if appended:
            self._checkpointer.wanted.set()
        with self._lock:
            subscriber_loops = list(self._waiters) if appended else []
        for loop in subscriber_loops:
            by_loop.setdefault(loop, [])
        for loop, loop_outcomes in by_loop.items():
            if loop is here:
                self._deliver(loop, loop_outcomes, appended)
                continue
            try:
                loop.call_soon_threadsafe(self._deliver, loop, loop_outcomes, appended)
            except RuntimeError:
                with self._lock:
                    self._waiters.pop(loop, None)  # that loop is closed

    def _fail_pending(self) -> None:
        leftovers: list[Outcome] = []
        while True:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Request):
                leftovers.append(Outcome(item, error=EventStoreUnavailable("sqlite event store is closed")))
        self._hand_back(leftovers)
