"""The provider index (provider id → transaction) as a payment re-drive asks it: which of the provider's objects
another transaction recorded. Against a real SQLite event store."""

from __future__ import annotations

from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.providers.port import Claims, Outcome, ProviderResult
from payments_transactions.provider_index import ProviderIndex

from tests.support.transactions import paid_transaction


async def test_the_claims_name_the_ids_another_transaction_recorded_even_after_the_index_was_read(
    store: SqliteEventStore,
) -> None:
    index = ProviderIndex(store)
    assert await index.claims("stripe", "txn_a", ["pi_b"]) == Claims()
    await paid_transaction(store, "txn_b", "stripe", "pm_card_visa", ProviderResult(Outcome.APPROVED, "pi_b"))
    await paid_transaction(store, "txn_a", "stripe", "pm_card_visa", ProviderResult(Outcome.APPROVED, "pi_a"))

    # Recorded after the index's last read: it catches up with the store.
    assert await index.claims("stripe", "txn_a", ["pi_a", "pi_b", "pi_c"]) == Claims(frozenset({"pi_b"}))
    assert await index.claims("authnet", "txn_a", ["pi_b"]) == Claims()  # another provider's ids
    assert await index.owners("stripe", ["pi_a", "pi_b"]) == {"pi_a": "txn_a", "pi_b": "txn_b"}


async def test_a_claim_is_contested_while_another_payment_that_sent_the_same_has_no_outcome(
    store: SqliteEventStore,
) -> None:
    index = ProviderIndex(store)
    await paid_transaction(store, "txn_a", "stripe", "pm_card_visa", ProviderResult(Outcome.RETRYABLE))
    await paid_transaction(store, "txn_b", "stripe", "pm_card_visa", ProviderResult(Outcome.RETRYABLE))
    await paid_transaction(store, "txn_c", "stripe", "pm_card_visa", ProviderResult(Outcome.RETRYABLE), "eur")

    assert await index.claims("stripe", "txn_a", ["pi_x"]) == Claims(contested=True)  # txn_b sent the same
    assert await index.claims("stripe", "txn_c", ["pi_x"]) == Claims()  # nobody else sent a charge in eur

    await paid_transaction(store, "txn_d", "stripe", "pm_card_visa", ProviderResult(Outcome.APPROVED, "pi_d"), "eur")
    assert await index.claims("stripe", "txn_c", ["pi_d"]) == Claims(frozenset({"pi_d"}))  # answered: not open
