"""A message whose handler found the event store unusable (a locked SQLite file, KurrentDB down) is redelivered
after a pause: such a store fails in milliseconds, and redelivered at once the message would use up its delivery
limit and be dead-lettered before a short outage is over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

from payments_shared.broker.port import Handler, Message
from payments_shared.eventstore.port import EventStoreUnavailable

logger = logging.getLogger(__name__)

STORE_RETRY_AFTER_S: Final = 2.0


def pausing_on_store_failure(handler: Handler) -> Handler:
    """`handler`, but an EventStoreUnavailable it raises is re-raised (the broker redelivers the message) only
    STORE_RETRY_AFTER_S later."""

    async def handle(message: Message) -> Mapping[str, Any] | None:
        try:
            return await handler(message)
        except EventStoreUnavailable as error:
            logger.warning(
                "event store unavailable: the message is redelivered after a pause",
                extra={"message_id": message.message_id, "reason": str(error), "pause_s": STORE_RETRY_AFTER_S},
            )
            await asyncio.sleep(STORE_RETRY_AFTER_S)
            raise

    return handle
