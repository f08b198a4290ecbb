"""The list read models and their checkpoints, in one SQLite file (`$DATA_DIR/readmodels.db`).

A projection's entries and its checkpoint change in the same transaction, and the checkpoint moves only by
compare-and-set: a runner whose checkpoint was moved under it (a `payments-ops replay` swapped in a rebuilt
model) notices, writes nothing, and resumes from the stored checkpoint. Each entry keeps the stream version it
was folded from and is never overwritten by an older one, so two writers can only move an entry forward.

The file is a cache of the event store: deleting it is safe (the runner rebuilds it from position 0).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from payments_shared.projections.model import ListEntry
from payments_shared.sqlite_setup import set_up

T = TypeVar("T")
logger = logging.getLogger(__name__)

FILE_NAME: Final = "readmodels.db"
SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS checkpoints (projection TEXT PRIMARY KEY, position INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entries (
        projection  TEXT    NOT NULL,
        id          TEXT    NOT NULL,
        workspace   TEXT    NOT NULL,
        created_us  INTEGER NOT NULL,
        status      TEXT,
        customer_id TEXT,
        email       TEXT,
        listed      INTEGER NOT NULL,
        version     INTEGER NOT NULL,
        body        TEXT    NOT NULL,
        PRIMARY KEY (projection, id)
    )""",
    "CREATE INDEX IF NOT EXISTS entries_newest ON entries (projection, workspace, created_us DESC, id DESC)",
)
UPSERT: Final = """
INSERT INTO entries (projection, id, workspace, created_us, status, customer_id, email, listed, version, body)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (projection, id) DO UPDATE SET
    workspace = excluded.workspace, created_us = excluded.created_us, status = excluded.status,
    customer_id = excluded.customer_id, email = excluded.email, listed = excluded.listed,
    version = excluded.version, body = excluded.body
WHERE excluded.version >= entries.version
"""


def read_model_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def epoch_us(iso: str) -> int:
    """`2026-11-26T16:02:11.123456Z` → microseconds since the epoch (naive times are taken as UTC)."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Versioned:
    """An entry and the stream version it was folded from."""

    entry: ListEntry
    version: int


@dataclass(frozen=True)
class ListQuery:
    """One page to read. The cursor is `starting_after` (the page of objects listed after it: older ones) or
    `ending_before` (the page listed just before it: newer ones), never both; either page is newest first."""

    workspace: str
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    statuses: tuple[str, ...] | None = None  # None: any status
    customer_id: str | None = None
    email: str | None = None
    created_gte_us: int | None = None
    created_lt_us: int | None = None
    cursor_at: tuple[int, str] | None = None  # the cursor's (created_us, id) when read from its own stream

    def __post_init__(self) -> None:
        if self.starting_after is not None and self.ending_before is not None:
            raise ValueError("starting_after and ending_before exclude each other")

    @property
    def cursor(self) -> str | None:
        return self.starting_after if self.ending_before is None else self.ending_before

    @property
    def backwards(self) -> bool:
        """True when the page is read from its cursor towards the newest objects (`ending_before`)."""
        return self.ending_before is not None

    @property
    def cursor_param(self) -> str:
        return "ending_before" if self.backwards else "starting_after"


@dataclass(frozen=True)
class ListPage:
    data: list[dict[str, Any]]
    has_more: bool
    position: int  # the checkpoint the page was read at: every event up to it is reflected


class UnknownCursor(Exception):
    """The cursor (`starting_after` or `ending_before`, its `param`) names no object of this list in this
    workspace."""

    def __init__(self, param: str, object_id: str) -> None:
        super().__init__(object_id)
        self.param = param


class ReadModel:
    """One SQLite file; calls run on a worker thread, one at a time (the connection is shared).

    `repair`: a file found damaged when opened (not SQLite, or failing its check) is moved aside
    (`readmodels.db.damaged-<time>`, for a look) and started afresh: it is a cache, rebuilt from the store. The
    services repair; `payments-ops replay`, which may run beside them, does not (sqlite3.DatabaseError)."""

    def __init__(self, path: Path, repair: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = _opened(path)
        except sqlite3.OperationalError:
            raise  # locked or out of reach: not damage
        except sqlite3.DatabaseError as damage:
            if not repair:
                raise
            _move_aside(path, damage)
            self._db = _opened(path)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._db)

        return await asyncio.to_thread(locked)

    async def close(self) -> None:
        await self._run(lambda db: db.close())

    # ---- checkpoints and writes -----------------------------------------------------------------------------

    async def checkpoint(self, projection: str) -> int:
        """The position of the last event the projection has applied; 0 before the first."""
        return await self._run(lambda db: _checkpoint(db, projection))

    async def commit(self, projection: str, entries: Sequence[Versioned], expected: int, position: int) -> bool:
        """Write `entries` and move the checkpoint from `expected` to `position`, atomically; False (nothing
        written) when the checkpoint is no longer `expected`."""
        return await self._run(lambda db: _commit(db, projection, entries, expected, position))

    async def discard(self, projection: str) -> None:
        await self._run(lambda db: _transaction(db, lambda: _discard(db, projection)))

    async def swap(self, rebuilt: str, projection: str, force: bool = False) -> int | None:
        """Replace `projection` (entries and checkpoint) with the `rebuilt` one in one transaction and return
        the new checkpoint — unless the live one is further on (None, nothing changed): a model never goes back,
        unless `force`. A runner of `projection` whose checkpoint moved resumes from the new one."""
        return await self._run(lambda db: _transaction(db, lambda: _swap(db, rebuilt, projection, force)))

    async def entries(self, projection: str) -> list[tuple[str, str, int, str]]:
        """Every entry as (id, workspace, version, body): for comparisons in tests and checks."""
        sql = "SELECT id, workspace, version, body FROM entries WHERE projection = ? ORDER BY id"
        return await self._run(lambda db: db.execute(sql, (projection,)).fetchall())

    # ---- lists ----------------------------------------------------------------------------------------------

    async def page(self, projection: str, query: ListQuery) -> ListPage:
        return await self._run(lambda db: _transaction(db, lambda: _page(db, projection, query), "BEGIN"))


def _opened(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA synchronous = NORMAL")  # a cache of the store: losing the tail only re-reads it
        set_up(db, lambda connection: [connection.execute(statement) for statement in SCHEMA])
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {verdict}")
    except BaseException:
        db.close()
        raise
    return db


def _move_aside(path: Path, damage: sqlite3.DatabaseError) -> None:
    aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
    logger.warning("read model %s is damaged (%s): moved to %s and rebuilt from the event store", path, damage, aside)
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.rename(aside.with_name(aside.name + suffix))


def _transaction(db: sqlite3.Connection, work: Callable[[], T], begin: str = "BEGIN IMMEDIATE") -> T:
    db.execute(begin)
    try:
        result = work()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def _checkpoint(db: sqlite3.Connection, projection: str) -> int:
    row = db.execute("SELECT position FROM checkpoints WHERE projection = ?", (projection,)).fetchone()
    return int(row[0]) if row else 0


def _commit(
    db: sqlite3.Connection, projection: str, entries: Sequence[Versioned], expected: int, position: int
) -> bool:
    db.execute("BEGIN IMMEDIATE")
    try:
        if _checkpoint(db, projection) != expected:
            db.execute("ROLLBACK")
            return False
        db.executemany(UPSERT, [_row(projection, item) for item in entries])
        db.execute(
            "INSERT INTO checkpoints (projection, position) VALUES (?, ?) "
            "ON CONFLICT (projection) DO UPDATE SET position = excluded.position",
            (projection, position),
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return True


def _row(projection: str, item: Versioned) -> tuple[Any, ...]:
    entry = item.entry
    return (
        projection,
        entry.id,
        entry.workspace,
        epoch_us(entry.created_at),
        entry.status,
        entry.customer_id,
        entry.email,
        1 if entry.listed else 0,
        item.version,
        json.dumps(entry.body, separators=(",", ":")),
    )


def _discard(db: sqlite3.Connection, projection: str) -> None:
    db.execute("DELETE FROM entries WHERE projection = ?", (projection,))
    db.execute("DELETE FROM checkpoints WHERE projection = ?", (projection,))


def _swap(db: sqlite3.Connection, rebuilt: str, projection: str, force: bool) -> int | None:
    position = _checkpoint(db, rebuilt)
    if _checkpoint(db, projection) > position and not force:
        return None
    db.execute("DELETE FROM entries WHERE projection = ?", (projection,))
    db.execute("UPDATE entries SET projection = ? WHERE projection = ?", (projection, rebuilt))
    db.execute(
        "INSERT INTO checkpoints (projection, position) VALUES (?, ?) "
        "ON CONFLICT (projection) DO UPDATE SET position = excluded.position",
        (projection, position),
    )
    db.execute("DELETE FROM checkpoints WHERE projection = ?", (rebuilt,))
    return position


def _page(db: sqlite3.Connection, projection: str, query: ListQuery) -> ListPage:
    conditions, values = _filters(projection, query)
    if query.cursor is not None:
        conditions.append(f"(created_us, id) {'>' if query.backwards else '<'} (?, ?)")
        values.extend(query.cursor_at or _cursor(db, projection, query))
    order = "ASC" if query.backwards else "DESC"  # read away from the cursor, whichever side the page is on
    sql = (
        f"SELECT body FROM entries WHERE {' AND '.join(conditions)} "
        f"ORDER BY created_us {order}, id {order} LIMIT {int(query.limit) + 1}"
    )
    rows = [body for (body,) in db.execute(sql, values).fetchall()]
    bodies, has_more = page_window(rows, query.limit, query.backwards)
    return ListPage(data=[json.loads(body) for body in bodies], has_more=has_more, position=_checkpoint(db, projection))


def page_window(rows: Sequence[T], limit: int, backwards: bool) -> tuple[list[T], bool]:
    """Up to `limit` + 1 rows read in order away from the cursor → the page, newest first, and whether more
    objects lie beyond it in that direction."""
    window = list(rows[:limit])
    if backwards:
        window.reverse()
    return window, len(rows) > limit


def _filters(projection: str, query: ListQuery) -> tuple[list[str], list[Any]]:
    conditions = ["projection = ?", "workspace = ?", "listed = 1"]
    values: list[Any] = [projection, query.workspace]
    if query.statuses is not None:
        conditions.append(f"status IN ({', '.join('?' * len(query.statuses))})")
        values.extend(query.statuses)
    if query.customer_id is not None:
        conditions.append("customer_id = ?")
        values.append(query.customer_id)
    if query.email is not None:
        conditions.append("email = ?")  # exact, case included, as Stripe's filter
        values.append(query.email)
    if query.created_gte_us is not None:
        conditions.append("created_us >= ?")
        values.append(query.created_gte_us)
    if query.created_lt_us is not None:
        conditions.append("created_us < ?")
        values.append(query.created_lt_us)
    return conditions, values


def _cursor(db: sqlite3.Connection, projection: str, query: ListQuery) -> tuple[int, str]:
    row = db.execute(
        "SELECT created_us, id FROM entries WHERE projection = ? AND workspace = ? AND id = ?",
        (projection, query.workspace, query.cursor),
    ).fetchone()
    if row is None:
        raise UnknownCursor(query.cursor_param, str(query.cursor))
    return int(row[0]), str(row[1])
