"""Commands and queries to a worker over the broker (request/reply with a deadline), the reply passed through.

`WorkerClient.call` returns the worker's reply as a response (status, JSON body and headers unchanged). Past the
deadline it raises `WorkerTimeout` so the route decides (charge/authorize: 202 pending; others: 503); a broker
that cannot take the request is 503 `provider_unavailable` with Retry-After, never a hang past the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import re

from fastapi.responses import JSONResponse
from payments_shared.broker.expiry import expiring
from payments_shared.broker.port import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    Message,
    PublishUnconfirmed,
    RequestTimeout,
)
from payments_shared.errors import ApiError
from payments_shared.http.json_response import FastJSONResponse
from payments_shared.messages import Command, Reply
from pydantic import ValidationError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 2.0
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# Extra time past the RPC deadline for a broker that hangs before the request is even sent.
_DEADLINE_MARGIN_S = 1.0


class WorkerTimeout(Exception):
    """No reply within the deadline: the command is queued and will still be carried out."""


class NotConfirmed(Exception):
    """The broker was handed the command but confirmed no copy of it before the deadline: it may be carried out."""


def unavailable(message: str) -> ApiError:
    return ApiError("provider_unavailable", message, code="service_unavailable", retry_after=RETRY_AFTER_S)


def still_processing(keyed: bool, subject: str | None = None) -> ApiError:
    """The command is queued and will complete. Without an Idempotency-Key a retry is a new request (a second
    refund, say): that client is told to look (at `subject`, the object the command makes or changes) before
    sending it again, and gets no Retry-After inviting one."""
    if keyed:
        message = "The request is still being processed; retry with the same Idempotency-Key to get its result."
        return ApiError("provider_unavailable", message, code="processing", retry_after=RETRY_AFTER_S)
    message = (
        "The request is still being processed and will complete. It had no Idempotency-Key, so sending it again "
        f"makes a new request: read {subject or 'the object it changes'} before you do."
    )
    return ApiError("provider_unavailable", message, code="processing")


def not_confirmed(keyed: bool, transaction_id: str | None, subject: str | None = None) -> ApiError:
    """The command may or may not be carried out. With its key a retry is safe (at most once); without one it
    could be a second charge, so that client is told to look first (at `subject`, the object it makes or
    changes)."""
    if keyed:
        message = (
            "The service could not confirm that it took the request, so it may still be carried out; retry with "
            "the same Idempotency-Key to get its result (it is carried out at most once)."
        )
        return ApiError("provider_unavailable", message, code="service_unavailable", retry_after=RETRY_AFTER_S)
    message = (
        "The service could not confirm that it took the request, so it may still be carried out. It had no "
        f"Idempotency-Key, so sending it again may do it twice: read {subject or 'the object it changes'} first."
    )
    return ApiError("provider_unavailable", message, code="service_unavailable", transaction_id=transaction_id)


def valid_traceparent(value: str | None) -> str | None:
    return value if value and _TRACEPARENT.match(value) else None


class WorkerClient:
    def __init__(self, broker: Broker, timeout_s: float) -> None:
        self._broker = broker
        self._timeout_s = timeout_s

    async def call(
        self, queue: str, command: Command, correlation_id: str, traceparent: str | None = None, *, read: bool = False
    ) -> JSONResponse:
        """A `read` is stamped to be shed by the worker once no one waits for its answer (broker.expiry)."""
        message = Message(
            body=command.model_dump(),
            correlation_id=correlation_id,
            headers={"traceparent": traceparent} if traceparent else {},
        )
        if read:
            message = expiring(message, self._timeout_s)
        try:
            async with asyncio.timeout(self._timeout_s + _DEADLINE_MARGIN_S):
                raw_reply = await self._broker.request(queue, message, timeout=self._timeout_s)
        except RequestTimeout:
            raise WorkerTimeout from None
        except PublishUnconfirmed:
            logger.warning("broker did not confirm %s, even sent again", command.type)
            raise NotConfirmed from None
        except TimeoutError:
            # The broker did not even give up by itself: the request may never have been queued, so no 202.
            logger.warning("broker did not answer within the deadline for %s", command.type)
            raise unavailable("The service is temporarily unavailable; retry later.") from None
        except BrokerUnavailable:
            logger.warning("broker unavailable for %s", command.type)
            raise unavailable("The service is temporarily unavailable; retry later.") from None
        except BrokerError:
            logger.exception("broker error for %s", command.type)
            raise unavailable("The service is temporarily unavailable; retry later.") from None
        return _response(raw_reply)


def _response(raw_reply: object) -> JSONResponse:
    try:
        reply = Reply.model_validate(raw_reply)
    except ValidationError:
        logger.error("malformed reply from a worker")
        raise
    return FastJSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
