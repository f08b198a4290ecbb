"""pytest fixtures for the Authorize.net test server: import them into a test module to use them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from payments_shared.providers.authnet.provider import AuthorizeNetProvider

from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer, running_server

CLIENT_TIMEOUT_S = 0.6  # the adapter's budget per operation in tests (a third per HTTP call); stalls last longer


@pytest.fixture
def authnet_server() -> Iterator[AuthnetTestServer]:
    with running_server(stall_s=CLIENT_TIMEOUT_S * 4) as server:
        yield server


@pytest.fixture
async def authnet(authnet_server: AuthnetTestServer) -> AsyncIterator[AuthorizeNetProvider]:
    provider = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, authnet_server.url, timeout_s=CLIENT_TIMEOUT_S)
    yield provider
    await provider.close()
