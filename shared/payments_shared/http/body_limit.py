"""Refuse request bodies over a limit (1 MiB) with 413 before buffering more of them.

A declared `Content-Length` over the limit is answered at once; otherwise the bytes actually received are
counted (chunked or lying clients included) and the first chunk past the limit raises `BodyTooLarge` from
`receive`, which the error handlers render as API.md's 413 (routes read the body through `request.body()`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payments_shared.errors import ApiError
from payments_shared.http.errors import error_response

MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            "invalid_request_error",
            f"Request body larger than {limit} bytes.",
            code="request_too_large",
            status=413,
        )


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared_length(scope) > self.max_bytes:
            response = error_response(BodyTooLarge(self.max_bytes), {"Connection": "close"})
            await response(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return counted
