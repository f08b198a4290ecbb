"""pytest fixtures for the Authorize.net test server: import them into a test module to use them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from payments_shared.providers.authnet.provider import AuthorizeNetProvider

from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer, running_server

# The adapter's budget per operation in tests (a third per HTTP call); stalls last longer. A plain call took 52 ms
# at the median and 124 ms at p99 on this machine under load: 0.6 s (0.2 s a call) left a loaded CI run one slow
# answer away from a test failing as if Authorize.net had not answered.
CLIENT_TIMEOUT_S = 3.0


@pytest.fixture
def authnet_server() -> Iterator[AuthnetTestServer]:
    with running_server(stall_s=CLIENT_TIMEOUT_S * 4) as server:
        yield server


@pytest.fixture
async def authnet(authnet_server: AuthnetTestServer) -> AsyncIterator[AuthorizeNetProvider]:
    provider = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, authnet_server.url, timeout_s=CLIENT_TIMEOUT_S)
    yield provider
    await provider.close()
