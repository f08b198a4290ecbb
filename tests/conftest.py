"""Fixtures every suite shares: where RabbitMQ and Redis are, and the rule that CI fails rather than skips without
them; a real SQLite event store in the test's own directory."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from payments_shared.eventstore.sqlite import SqliteEventStore

from tests.support.rabbitmq import fresh_vhost

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5672), timeout=2):
            return True
    except OSError:
        return False


def local_server(name: str, url: str) -> str:
    """`url` when the local server answers there. Without it: skip locally, fail under CI=true."""
    if not _answers(url):
        message = f"{name} does not answer at {url}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: {name}-dependent tests must run)")
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The local RabbitMQ's URL."""
    return local_server("RabbitMQ", RABBITMQ_URL)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis's URL (rate limits shared between processes)."""
    return local_server("Redis", REDIS_URL)


@pytest.fixture(scope="module")
def isolated_rabbitmq_url(rabbitmq_url: str) -> Iterator[str]:
    """A fresh RabbitMQ virtual host for one test module, so services-mode tests never share queues with
    each other or with a developer's running system. Deleted afterwards."""
    import shutil

    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed to create an isolated virtual host")
    with fresh_vhost(rabbitmq_url) as url:
        yield url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = SqliteEventStore(tmp_path / "events.db")
    yield opened
    await opened.close()
