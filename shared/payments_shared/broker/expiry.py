"""Requests that are worthless once their sender has stopped waiting (reads): the sender stamps a time after which
no one listens for the reply, and the consumer answers such a request, once that time has passed, without
running it. Under overload, reads queued behind slow commands are then shed instead of piling up work whose
answer nobody reads. Commands are never stamped: an accepted command is carried out whatever its client does.

The stamp is a wall-clock time (Unix seconds) in a message header, so it means the same on every broker
(RabbitMQ's own per-message TTL would move expired reads into the queues' dead-letter queue, among the
messages an operator must look at). Clocks of sender and consumer may differ a little: a request is shed only
`CLOCK_SKEW_S` past its stamp.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from payments_shared.broker.port import Handler, Message
from payments_shared.errors import ApiError
from payments_shared.messages import Reply

logger = logging.getLogger(__name__)

EXPIRES_AT_HEADER: Final = "expires-at"  # not x-…: RabbitMQ adapters keep those for the broker
CLOCK_SKEW_S: Final = 1.0


def expiring(message: Message, after_s: float, now: Callable[[], float] = time.time) -> Message:
    """`message` stamped as worthless `after_s` seconds from now."""
    return dataclasses.replace(message, headers={**message.headers, EXPIRES_AT_HEADER: f"{now() + after_s:.3f}"})


def expired(message: Message, now: float) -> bool:
    """Whether `message` carries a stamp more than CLOCK_SKEW_S in the past; an unreadable stamp never expires."""
    stamp = message.headers.get(EXPIRES_AT_HEADER)
    if stamp is None:
        return False
    try:
        expires_at = float(stamp)
    except ValueError:
        return False
    return math.isfinite(expires_at) and now > expires_at + CLOCK_SKEW_S


def expired_reply() -> Mapping[str, Any]:
    error = ApiError(
        "provider_unavailable",
        "The request was not run: its client had stopped waiting for the answer.",
        code="request_expired",
        retry_after=1.0,
    )
    return Reply(status=error.status, body=error.body(), headers=error.headers()).to_body()


def shedding_expired(handler: Handler, now: Callable[[], float] = time.time) -> Handler:
    """`handler`, but an expired request is answered at once (503 `request_expired`) without running it."""

    async def handle(message: Message) -> Mapping[str, Any] | None:
        if expired(message, now()):
            logger.info(
                "shed a request its sender had stopped waiting for",
                extra={"message_id": message.message_id, "command": str(message.body.get("type", ""))},
            )
            return expired_reply()
        return await handler(message)

    return handle
