"""The provider index (provider id → transaction) as a payment re-drive asks it: which of the provider's objects
another transaction recorded. Against a real SQLite event store."""

from __future__ import annotations

from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.providers.port import Outcome, ProviderResult
from payments_transactions.provider_index import ProviderIndex

from tests.support.transactions import paid_transaction


async def test_owned_by_others_names_the_ids_another_transaction_recorded_even_after_the_index_was_read(
    store: SqliteEventStore,
) -> None:
    index = ProviderIndex(store)
    assert await index.owned_by_others("stripe", "txn_a", ["pi_b"]) == frozenset()
    await paid_transaction(store, "txn_b", "stripe", "pm_card_visa", ProviderResult(Outcome.APPROVED, "pi_b"))
    await paid_transaction(store, "txn_a", "stripe", "pm_card_visa", ProviderResult(Outcome.APPROVED, "pi_a"))

    # Recorded after the index's last read: a miss catches up with the store.
    assert await index.owned_by_others("stripe", "txn_a", ["pi_a", "pi_b", "pi_c"]) == frozenset({"pi_b"})
    assert await index.owned_by_others("authnet", "txn_a", ["pi_b"]) == frozenset()  # another provider's ids
    assert await index.owners("stripe", ["pi_a", "pi_b"]) == {"pi_a": "txn_a", "pi_b": "txn_b"}
