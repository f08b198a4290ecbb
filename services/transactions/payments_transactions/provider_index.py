"""Which transaction a provider id belongs to: a read model of the store, kept in memory.

Every transaction stream records its provider in `TransactionRequested` and the provider's ids on later events
(`provider_reference`: the PaymentIntent or transId; `details`: the charge, the refund). The index folds the
store's global order into `(provider, provider id) → transaction id`, from a checkpoint (the next position to
read). A lookup that misses first catches up with the store to its end, so an id recorded before the lookup
began is always found; nothing else has to keep the index fresh. A new process starts empty and catches up from
position 0 on its first miss (rebuilding from the store is the replay); a persistent projection can replace it
when that read becomes too long.

Webhooks use it to find the transaction an event is about. A payment re-drive that looks for its earlier attempt's
object by what it sent asks it for the claims on what it found (`claims`): the objects another transaction
recorded (never that payment's), and whether another payment that sent the same is still without an answer (then an
object nobody recorded may be that one's). For that it also keeps the payments with no outcome recorded yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from payments_shared.eventstore.port import EventStore, RecordedEvent
from payments_shared.providers.port import Claims

from payments_transactions.domain import events as ev

STREAM_PREFIX = "transaction-"
DETAIL_KEYS = ("payment_intent", "charge", "refund", "trans_id", "transaction_id")
PAYMENT_OUTCOMES = frozenset(
    {
        ev.PAYMENT_AUTHORIZED,
        ev.PAYMENT_CAPTURED,
        ev.PAYMENT_REQUIRES_ACTION,
        ev.PAYMENT_HELD_FOR_REVIEW,
        ev.PAYMENT_FAILED,
    }
)


def what_was_sent(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a payment sends its provider, as far as a look-up by what was sent tells payments apart (the payment
    method left out: a look-up may not compare it, so two payments that differ only there are not told apart)."""
    metadata = data.get("metadata") or {}
    return (
        data.get("provider"),
        data.get("kind"),
        data.get("amount"),
        data.get("currency"),
        data.get("customer_reference"),
        tuple(sorted(metadata.items())),
    )


def provider_ids(data: Mapping[str, Any]) -> list[str]:
    found = [data.get("provider_reference")]
    details = data.get("details")
    if isinstance(details, Mapping):
        found.extend(details.get(key) for key in DETAIL_KEYS)
    return [str(value) for value in found if isinstance(value, str | int) and not isinstance(value, bool) and value]


class ProviderIndex:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._checkpoint = 0
        self._provider_of: dict[str, str] = {}  # transaction id → provider name
        self._owner: dict[tuple[str, str], str] = {}  # (provider, provider id) → transaction id
        self._unanswered: dict[str, tuple[Any, ...]] = {}  # transaction id → what its payment sent, no outcome yet
        self._lock = asyncio.Lock()

    async def find(self, provider: str, references: Iterable[str]) -> str | None:
        wanted = list(references)
        async with self._lock:
            found = self._lookup(provider, wanted)
            if found is None:
                await self._catch_up()
                found = self._lookup(provider, wanted)
            return found

    async def owners(self, provider: str, references: Iterable[str]) -> dict[str, str]:
        """The transaction each of `references` belongs to, for those that belong to one (caught up with the store
        first when any is not known yet, so an id recorded before the call began is always found)."""
        wanted = list(references)
        async with self._lock:
            if any((provider, ref) not in self._owner for ref in wanted):
                await self._catch_up()
            return {ref: self._owner[(provider, ref)] for ref in wanted if (provider, ref) in self._owner}

    async def claims(self, provider: str, transaction_id: str, references: Sequence[str]) -> Claims:
        """What the store says of `references` (objects `transaction_id`'s earlier attempt may have made): those
        another transaction recorded, and whether another payment that sent the same has no outcome yet. Always
        caught up with the store first: a payment requested or answered before the call began counts."""
        async with self._lock:
            await self._catch_up()
            owners = {ref: self._owner.get((provider, ref)) for ref in references}
            owned = frozenset(ref for ref, owner in owners.items() if owner is not None and owner != transaction_id)
            sent = self._unanswered.get(transaction_id)
            contested = sent is not None and any(
                other != transaction_id and other_sent == sent for other, other_sent in self._unanswered.items()
            )
            return Claims(owned, contested)

    async def catch_up(self) -> None:
        """Read what the store appended since the last read (the whole store the first time): before a provider call
        that may ask `claims`, so that only the tail is read during the call."""
        async with self._lock:
            await self._catch_up()

    def _lookup(self, provider: str, references: list[str]) -> str | None:
        return next((self._owner[(provider, ref)] for ref in references if (provider, ref) in self._owner), None)

    async def _catch_up(self) -> None:
        async for event in self._store.read_all(self._checkpoint):
            self._checkpoint = event.position + 1
            self._index(event)

    def _index(self, event: RecordedEvent) -> None:
        if not event.stream.startswith(STREAM_PREFIX):
            return
        transaction_id = event.stream.removeprefix(STREAM_PREFIX)
        if event.type == ev.TRANSACTION_REQUESTED:
            self._provider_of[transaction_id] = str(event.data.get("provider"))
            self._unanswered[transaction_id] = what_was_sent(event.data)
        elif event.type in PAYMENT_OUTCOMES:
            self._unanswered.pop(transaction_id, None)
        provider = self._provider_of.get(transaction_id)
        if provider is None:
            return
        for reference in provider_ids(event.data):
            self._owner.setdefault((provider, reference), transaction_id)
