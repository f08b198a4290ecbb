"""Record a verified event once: `webhook-{provider}-{event_id}` appended expecting no stream, so a second
delivery of the same event id meets the existing stream and is a detected duplicate."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

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
        "headers": dict(headers),
        "payload": dict(event.payload),
    }


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
