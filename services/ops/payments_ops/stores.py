"""What the operator commands open: the event store and read models the services use, from the same settings
(DATA_DIR, EVENTSTORE_URI, BROKER_URL with the services' defaults)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from payments_shared.eventstore.factory import SQLITE_PREFIX, open_event_store, sqlite_path
from payments_shared.eventstore.port import EventStore, EventStoreUnavailable
from payments_shared.projections.readmodel import ReadModel, read_model_path
from payments_shared.settings import CommonSettings, load


def settings() -> CommonSettings:
    return load(CommonSettings)


def _holds_a_store(path: Path) -> bool:
    """A file with something in it (an empty one, from `touch` or a failed copy, is no store: opening it would
    write a new empty one there)."""
    return path.is_file() and path.stat().st_size > 0


@asynccontextmanager
async def event_store(common: CommonSettings) -> AsyncIterator[EventStore]:
    """The services' event store. An SQLite file that is not there is an error, not a new empty store: an audit
    of a mistyped DATA_DIR must not report all clear (nor leave an empty store behind)."""
    uri = common.eventstore_uri
    if uri.startswith(SQLITE_PREFIX) and not _holds_a_store(sqlite_path(uri)):
        raise EventStoreUnavailable(f"no event store at {sqlite_path(uri)} (check DATA_DIR or EVENTSTORE_URI)")
    store = open_event_store(uri)
    try:
        yield store
    finally:
        await store.close()


class ReadModelUnusable(Exception):
    """The read model file is damaged or locked: one line naming it (a damaged one is rebuilt by the services)."""


@asynccontextmanager
async def read_model(common: CommonSettings) -> AsyncIterator[ReadModel]:
    path = read_model_path(common.data_dir)
    try:
        model = ReadModel(path, repair=False)  # the services may have it open: theirs to repair
    except sqlite3.Error as error:
        raise ReadModelUnusable(_unusable(path, error)) from None
    try:
        yield model
    except sqlite3.Error as error:
        raise ReadModelUnusable(_unusable(path, error)) from None
    finally:
        await model.close()


def _unusable(path: Path, error: sqlite3.Error) -> str:
    if isinstance(error, sqlite3.OperationalError):
        return f"the read model {path} cannot be used now ({error}): retry"
    return (
        f"the read model {path} is damaged ({error}): restart the service that keeps it (it moves the file aside "
        "and rebuilds it from the event store), or stop it and delete the file"
    )
