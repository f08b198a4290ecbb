"""localstripe, started once per test session on a free port and flushed before each test that uses it; the Stripe
wire-format server, one per test that uses it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from payments_shared.providers.stripe import StripeProvider

from tests.support.localstripe_server import flush, running_localstripe
from tests.support.stripe_wire_server import WIRE_API_KEY, StripeWireServer

# A dummy test-mode key: localstripe accepts any `sk_…`. Registered as a secret by the adapter like a real one.
LOCALSTRIPE_KEY = "sk_test_localstripe0123456789"


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_localstripe(tmp_path_factory.mktemp("localstripe") / "localstripe.log") as base_url:
        yield base_url


@pytest.fixture
def localstripe(localstripe_url: str) -> str:
    """localstripe's base URL, with every object of earlier tests forgotten."""
    flush(localstripe_url)
    return localstripe_url


@pytest.fixture
async def stripe_provider(localstripe: str) -> AsyncIterator[StripeProvider]:
    provider = StripeProvider(LOCALSTRIPE_KEY, api_base=localstripe, timeout_s=10)
    yield provider
    await provider.close()


@pytest.fixture
async def wire() -> AsyncIterator[StripeWireServer]:
    server = StripeWireServer(WIRE_API_KEY)
    await server.start()
    yield server
    await server.stop()
