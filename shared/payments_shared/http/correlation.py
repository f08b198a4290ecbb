"""Give every request a correlation id (the client's `X-Request-Id` when it is sane, else a new one), set it in
`payments_shared.logging.correlation_id` for everything logged while handling the request, and echo it back.
A card number is no sane id: it would be echoed and recorded in every event's metadata."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payments_shared.carddata import contains_card_number
from payments_shared.ids import random_uuid_str
from payments_shared.logging import correlation_id

REQUEST_ID_HEADER = "x-request-id"
_HEADER = REQUEST_ID_HEADER.encode()
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == _HEADER:
            text = value.decode("latin-1")
            return text if _SANE_ID.match(text) and not contains_card_number(text) else None
    return None


class CorrelationIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or random_uuid_str()
        scope.setdefault("state", {})["correlation_id"] = request_id
        token = correlation_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                headers.append((_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)
