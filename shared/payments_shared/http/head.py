"""HEAD answered wherever GET is (RFC 9110 asks it of every general-purpose server): the request is routed as a GET,
and its answer goes out with the GET's status and headers but no body. FastAPI's routes take only the methods they
declare, so a load balancer checking `HEAD /healthz` would otherwise get 405 and take the process out."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
