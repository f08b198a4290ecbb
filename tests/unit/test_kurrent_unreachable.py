"""The KurrentDB adapter with no server to reach (none can run here; the contract suite runs it against one when
there is): it answers EventStoreUnavailable, and closing a client that never connected is quiet (the gateway
closes its store on the way out even when KurrentDB was never reached)."""

from __future__ import annotations

from typing import Any

import pytest
from kurrentdbclient.exceptions import NodeIsNotLeaderError
from payments_shared.eventstore.factory import open_event_store
from payments_shared.eventstore.kurrent import KurrentEventStore, translate
from payments_shared.eventstore.port import NO_STREAM, EventStoreUnavailable, NewEvent

from tests.blackbox.server import free_port


async def test_an_unreachable_server_is_unavailable_and_closes_quietly() -> None:
    store = open_event_store(f"kurrentdb://127.0.0.1:{free_port()}?tls=false")
    with pytest.raises(EventStoreUnavailable):
        await store.ping()
    await store.close()


async def test_a_store_never_used_closes_quietly() -> None:
    store = open_event_store(f"kurrentdb://127.0.0.1:{free_port()}?tls=false")
    await store.close()


async def test_a_write_a_node_refuses_as_not_the_leader_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    # kurrentdbclient's autoreconnect re-raises it for a single non-discover target, or when the retry after one
    # reconnection meets a node that is still not the leader (an election): the store cannot be written now.
    async def not_leader(*args: Any, **kwargs: Any) -> int:
        raise NodeIsNotLeaderError("Leader info available", host="10.0.0.2", port=2113)

    store = KurrentEventStore(f"kurrentdb://127.0.0.1:{free_port()}?tls=false")
    monkeypatch.setattr(store._client, "append_to_stream", not_leader)
    with pytest.raises(EventStoreUnavailable):
        await store.append("transaction-txn_x", [NewEvent("TransactionRequested", {})], NO_STREAM)
    assert isinstance(translate(NodeIsNotLeaderError("not leader")), EventStoreUnavailable)
    await store.close()
