"""The real embedded server (`python -m payments_embedded`) as a subprocess on a free port, once per session;
each test works in its own workspace."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.blackbox.server import Api, Server, embedded_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("embedded-data")
    # Budgets big enough for every test (each has its own workspace); the 429 test has a server of its own.
    with embedded_server(data_dir, RATE_LIMIT_READ="600/minute", RATE_LIMIT_WRITE="300/minute") as running:
        yield running


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def api(http: httpx.Client) -> Api:
    return Api(http)
