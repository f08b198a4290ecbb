"""The KurrentDB adapter with no server to reach (none can run here; the contract suite runs it against one when
there is): it answers EventStoreUnavailable, and closing a client that never connected is quiet (the gateway
closes its store on the way out even when KurrentDB was never reached)."""

from __future__ import annotations

import pytest
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.port import EventStoreUnavailable

from tests.blackbox.server import free_port


async def test_an_unreachable_server_is_unavailable_and_closes_quietly() -> None:
    store = open_event_store(f"kurrentdb://127.0.0.1:{free_port()}?tls=false")
    with pytest.raises(EventStoreUnavailable):
        await store.ping()
    await store.close()


async def test_a_store_never_used_closes_quietly() -> None:
    store = open_event_store(f"kurrentdb://127.0.0.1:{free_port()}?tls=false")
    await store.close()
