"""`apply_provider_event`: a verified provider webhook (sent by webhook-ingest) applied to the transaction it is
about. The decision is `domain.provider_events.decide`; this module finds the transaction, appends what was
decided at the version read (deciding again on a concurrent append) and acknowledges.

Repeats are harmless: the appended event carries the webhook event id and a stream that holds it ignores the
event. An event about a payment this system does not know is acknowledged and ignored (webhook-ingest recorded
it already).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from payments_shared import faults
from payments_shared.errors import invalid
from payments_shared.eventstore.port import WrongExpectedVersion
from payments_shared.messages import Reply, event_metadata
from payments_shared.webhook_applied import mark_applied

from payments_transactions.context import Delivery
from payments_transactions.domain.provider_events import (
    ProviderEvent,
    WebhookHistory,
    decide,
    names_only_itself,
    refetch_reference,
)
from payments_transactions.provider_index import ProviderIndex
from payments_transactions.provider_refetch import refetched
from payments_transactions.streams import TransactionStreams
from payments_transactions.views import error_reply

logger = logging.getLogger(__name__)

APPLY_PROVIDER_EVENT: Final = "apply_provider_event"
MAX_APPEND_RACES: Final = 20
BEFORE_PROVIDER_EVENT_APPLIED: Final = "before_provider_event_applied"  # a fault-injection point (tests)


def _ack(outcome: str, transaction_id: str | None = None) -> dict[str, Any]:
    return Reply(status=200, body={"outcome": outcome, "transaction_id": transaction_id}).to_body()


class ProviderEventHandler:
    def __init__(
        self,
        streams: TransactionStreams,
        providers: Mapping[str, object] | None = None,
        index: ProviderIndex | None = None,
    ) -> None:
        self._streams = streams
        self._providers: Mapping[str, object] = providers or {}
        self._index = index if index is not None else ProviderIndex(streams.store)

    async def handle(self, delivery: Delivery) -> dict[str, Any]:
        reply = await self._apply(delivery)
        await mark_applied(self._streams.store, delivery.payload, reply["body"])
        return reply

    async def _apply(self, delivery: Delivery) -> dict[str, Any]:
        try:
            event = ProviderEvent.from_payload(delivery.payload)
        except KeyError as missing:
            return error_reply(invalid(f"apply_provider_event without {missing}."))
        log = {"provider": event.provider, "event_id": event.event_id, "event_type": event.type}
        transaction_id = await self._index.find(event.provider, event.references())
        if transaction_id is None and names_only_itself(event):  # its details name the original
            original = await refetched(self._providers, event, None)  # read again below, in the original's currency
            transaction_id = await self._index.find(event.provider, original.references())
        if transaction_id is None:
            logger.info("provider event about an unknown payment: ignored", extra=log)
            return _ack("unknown_object")
        if refetch_reference(event) is not None:  # the payload may be stale: the provider's current state rules
            _, known = await self._streams.load(transaction_id)
            event = await refetched(self._providers, event, known.currency if known is not None else None)
        for _ in range(MAX_APPEND_RACES):
            recorded, transaction = await self._streams.load(transaction_id)
            if transaction is None:
                return _ack("unknown_object")
            decided = decide(transaction, event, WebhookHistory.of(recorded))
            if not decided:
                return _ack("nothing_to_apply", transaction_id)
            command = delivery.command.model_copy(update={"workspace": transaction.workspace})
            metadata = event_metadata(command, delivery.correlation_id, delivery.message_id, delivery.traceparent)
            faults.reached(BEFORE_PROVIDER_EVENT_APPLIED)
            try:
                await self._streams.append(transaction_id, decided, transaction.version, metadata)
            except WrongExpectedVersion:
                continue
            logger.info("provider event applied", extra={**log, "applied_as": decided[0].type, "events": len(decided)})
            return _ack(decided[0].type, transaction_id)
        raise RuntimeError(f"transaction {transaction_id} kept changing while applying {event.event_id}")
