"""Services mode for integration tests: each service its own process over the real RabbitMQ (a fresh virtual
host per module) and one shared SQLite event store."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.blackbox.server import Server, services


@pytest.fixture(scope="module")
def services_server(isolated_rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with services(tmp_path_factory.mktemp("services-data"), isolated_rabbitmq_url) as running:
        yield running


@pytest.fixture
def services_http(services_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=services_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(params=["memory", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each in-process test that asks for it runs twice: on the in-memory broker and on the local RabbitMQ."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("isolated_rabbitmq_url")
    return url
