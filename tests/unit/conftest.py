"""Fixtures unit tests share, each in the test's own temporary directory: for the projection tests
(test_projections.py, test_list_paging.py) a SQLite event store and a list read model; `each_embedded_store`, the
test once per embedded event-store adapter (in memory, a SQLite file). A module with a `store` fixture of its own
keeps it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import EventStore
from payments_shared.projections.readmodel import ReadModel


@pytest.fixture
async def model(tmp_path: Path) -> AsyncIterator[ReadModel]:
    opened = ReadModel(tmp_path / "readmodels.db")
    yield opened
    await opened.close()


@pytest.fixture(params=["memory", "sqlite"])
async def each_embedded_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    opened = open_event_store("memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}")
    yield opened
    await opened.close()
