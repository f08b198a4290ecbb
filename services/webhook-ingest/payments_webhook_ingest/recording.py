"""Record a verified event once: `webhook-{provider}-{event_id}` appended expecting no stream, so a second
delivery of the same event id meets the existing stream and is a detected duplicate."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from payments_shared.carddata import contains_card_number, mask_card_numbers
from payments_shared.errors import ApiError
from payments_shared.eventstore.port import NO_STREAM, EventStore, EventStoreError, NewEvent, WrongExpectedVersion
from payments_shared.messages import utc_now_iso

from payments_webhook_ingest.event import ProviderEvent

logger = logging.getLogger(__name__)

WEBHOOK_RECEIVED: Final = "WebhookReceived"
WEBHOOK_FORWARDED: Final = "WebhookForwarded"


def webhook_stream(provider: str, event_id: str) -> str:
    return f"webhook-{provider}-{event_id}"


def store_unavailable() -> ApiError:
    # 503 makes the provider deliver again later: nothing was recorded, nothing acknowledged.
    return ApiError("provider_unavailable", "The event could not be recorded; retry later.", retry_after=5)


def received_data(event: ProviderEvent, headers: Mapping[str, str], received_at: str) -> dict[str, Any]:
    return {
        "provider": event.provider,
        "event_id": event.event_id,
        "event_type": event.type,
        "object_id": event.object_id,
        "object_type": event.object_type,
        "provider_created": event.provider_created,
        "received_at": received_at,
        "headers": {name: mask_card_numbers(value) for name, value in headers.items()},
        "payload": without_card_numbers(event.payload),
    }


def _is_identifier(key: str) -> bool:
    """A provider's id (`id`, `transId`, `customer_id`): digits in it are never a card number (Authorize.net's are
    all digits), and masking one would lose what the event is about."""
    return key == "id" or key.endswith(("Id", "_id", "ID"))


def without_card_numbers(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a verified event with every card number in its text masked (a description typed at the provider,
    say): no event holds one. Walked with a stack, not by recursion: the payload nests as deep as the parser went."""
    copied = dict(payload)
    pending: list[dict[str, Any] | list[Any]] = [copied]
    while pending:
        container = pending.pop()
        if isinstance(container, list):
            container[:] = [_masked(value, None, pending) for value in container]
            continue
        for key, value in container.items():
            container[key] = _masked(value, key, pending)
        for key in [key for key in container if contains_card_number(key)]:
            container[mask_card_numbers(key)] = container.pop(key)
    return copied


def _masked(value: Any, key: str | None, pending: list[dict[str, Any] | list[Any]]) -> Any:
    """Text with its card numbers masked (an identifier's as it is); an object or array copied and put on
    `pending` to be walked; anything else as it is."""
    if isinstance(value, str):
        return value if key is not None and _is_identifier(key) else mask_card_numbers(value)
    if isinstance(value, dict | list):
        copy: dict[str, Any] | list[Any] = dict(value) if isinstance(value, dict) else list(value)
        pending.append(copy)
        return copy
    return value


class WebhookRecorder:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def record(
        self, event: ProviderEvent, headers: Mapping[str, str], correlation_id: str
    ) -> dict[str, Any] | None:
        """Append the event; its recorded data when it is new, None when this event id was recorded before.

        The event's own id stays new (not derived): with a derived id the store would treat a second append as the
        idempotent repeat of the first and not report the duplicate.
        """
        received_at = utc_now_iso()
        data = received_data(event, headers, received_at)
        metadata = {
            "$correlationId": correlation_id,
            "$causationId": correlation_id,
            "actor": f"webhook:{event.provider}",
            "occurred_at": received_at,
        }
        stream = webhook_stream(event.provider, event.event_id)
        try:
            await self.store.append(stream, [NewEvent(WEBHOOK_RECEIVED, data, metadata)], NO_STREAM)
        except WrongExpectedVersion:
            return None
        except EventStoreError:
            logger.warning("webhook not recorded: event store unavailable", extra={"stream": stream})
            raise store_unavailable() from None
        return data
