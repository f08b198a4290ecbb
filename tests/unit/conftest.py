"""Fixtures the projection tests share (test_projections.py, test_list_paging.py): a SQLite event store and a list
read model, each in the test's own temporary directory. A module with a `store` fixture of its own keeps it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.projections.readmodel import ReadModel


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = SqliteEventStore(tmp_path / "events.db")
    yield opened
    await opened.close()


@pytest.fixture
async def model(tmp_path: Path) -> AsyncIterator[ReadModel]:
    opened = ReadModel(tmp_path / "readmodels.db")
    yield opened
    await opened.close()
