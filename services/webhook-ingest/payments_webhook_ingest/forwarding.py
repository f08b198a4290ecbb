"""Hand a recorded event to the worker that owns it: a `Command` of type `apply_provider_event` sent (not
requested) to its queue, then `WebhookForwarded` appended to the webhook stream.

A send that fails after the event was recorded loses nothing: `ForwardingSweep` finds recorded events without
`WebhookForwarded` and sends them again. Sending twice is harmless: the worker records the webhook event id it
applied and ignores a repeat.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from payments_shared.broker.port import Broker, Message
from payments_shared.eventstore.port import EventStore, EventStoreError, NewEvent, WrongExpectedVersion
from payments_shared.messages import Command, utc_now_iso

from payments_webhook_ingest.recording import WEBHOOK_FORWARDED, webhook_stream
from payments_webhook_ingest.routing import owning_queue

logger = logging.getLogger(__name__)

APPLY_PROVIDER_EVENT = "apply_provider_event"
_COMMAND_NAMESPACE = uuid.UUID("8a0d7d0e-4b59-4f55-9b0f-3c3f2f1f6a11")
SEND_TIMEOUT_S = 5.0


def provider_object(provider: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object the event is about: Stripe's `data.object`, Authorize.net's `payload`."""
    if provider == "stripe":
        inner = payload.get("data")
        found = inner.get("object") if isinstance(inner, Mapping) else None
    else:
        found = payload.get("payload")
    return found if isinstance(found, Mapping) else {}


def apply_command(received: Mapping[str, Any]) -> Command:
    """The command for a recorded `WebhookReceived` (the same command however often it is built)."""
    provider = str(received["provider"])
    event_id = str(received["event_id"])
    stream = webhook_stream(provider, event_id)
    payload: dict[str, Any] = {
        "provider": provider,
        "event_id": event_id,
        "event_type": received["event_type"],
        "object_id": received.get("object_id"),
        "object_type": received.get("object_type"),
        "provider_created": received["provider_created"],
        "webhook_stream": stream,
        "object": dict(provider_object(provider, received["payload"])),
    }
    if provider == "stripe":
        inner = received["payload"].get("data")
        if isinstance(inner, Mapping) and isinstance(inner.get("previous_attributes"), Mapping):
            payload["previous_attributes"] = dict(inner["previous_attributes"])
    return Command(
        type=APPLY_PROVIDER_EVENT,
        workspace="",  # unknown here: the worker takes it from the object the event is about
        actor=f"webhook:{provider}",
        command_id=str(uuid.uuid5(_COMMAND_NAMESPACE, stream)),
        payload=payload,
    )


class WebhookForwarder:
    def __init__(self, store: EventStore, broker: Broker, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.store = store
        self.broker = broker
        self.send_timeout_s = send_timeout_s

    async def forward(self, received: Mapping[str, Any], correlation_id: str = "") -> bool:
        """Send the command and mark the stream forwarded; False (logged) when either step failed.
        An event type no worker owns counts as forwarded: there is nothing to send."""
        queue = owning_queue(str(received["provider"]), str(received["event_type"]))
        if queue is None:
            return True
        command = apply_command(received)
        message = Message(body=command.model_dump(), correlation_id=correlation_id or command.command_id)
        stream = str(command.payload["webhook_stream"])
        try:
            async with asyncio.timeout(self.send_timeout_s):  # not wait_for: on 3.11 it can swallow a cancel
                await self.broker.send(queue, message)
        except Exception as error:  # any failure: the sweep sends it again
            logger.warning("webhook not forwarded yet", extra={"stream": stream, "error": type(error).__name__})
            return False
        await self._mark_forwarded(stream, queue)
        return True

    async def _mark_forwarded(self, stream: str, queue: str) -> None:
        now = utc_now_iso()
        event = NewEvent(WEBHOOK_FORWARDED, {"queue": queue, "forwarded_at": now}, {"occurred_at": now})
        try:
            await self.store.append(stream, [event], 0)  # right after WebhookReceived (version 0)
        except WrongExpectedVersion:
            pass  # another sender marked it first
        except EventStoreError as error:
            # Unmarked, the sweep sends it once more; the worker ignores the repeat.
            logger.warning("forwarded webhook not marked", extra={"stream": stream, "error": type(error).__name__})
