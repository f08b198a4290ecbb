"""What the operator commands open: the event store and read models the services use, from the same settings
(DATA_DIR, EVENTSTORE_URI, BROKER_URL with the services' defaults)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import EventStore
from payments_shared.projections.readmodel import ReadModel, read_model_path
from payments_shared.settings import CommonSettings, load


def settings() -> CommonSettings:
    return load(CommonSettings)


@asynccontextmanager
async def event_store(common: CommonSettings) -> AsyncIterator[EventStore]:
    store = open_event_store(common.eventstore_uri)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def read_model(common: CommonSettings) -> AsyncIterator[ReadModel]:
    model = ReadModel(read_model_path(common.data_dir))
    try:
        yield model
    finally:
        await model.close()
