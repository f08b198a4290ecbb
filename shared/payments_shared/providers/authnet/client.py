"""The HTTP transport to Authorize.net's XML endpoint: one shared `httpx.AsyncClient` with timeouts.

A failure is classified by whether the request may have reached Authorize.net: `NotSent` (connection refused,
connect timeout, pool exhausted: safe to send again) or `Ambiguous` (read timeout, connection lost after
sending, a 5xx, an unreadable answer: look the transaction up before sending again).
"""

from __future__ import annotations

import httpx

from payments_shared.providers.authnet.parse import ApiResponse, MalformedResponse, parse_response

_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "Accept": "text/xml"}


class TransportFailure(Exception):
    """The call has no answer to read."""


class NotSent(TransportFailure):
    """Authorize.net cannot have acted on the request."""


class Ambiguous(TransportFailure):
    """Authorize.net may or may not have acted on the request."""


class AuthnetClient:
    def __init__(self, url: str, timeout_s: float, http: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=timeout_s),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    async def call(self, document: bytes) -> ApiResponse:
        try:
            answer = await self._http.post(self.url, content=document, headers=_HEADERS)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise NotSent(type(error).__name__) from None
        except httpx.TransportError as error:  # read/write timeouts, connection lost, protocol errors
            raise Ambiguous(type(error).__name__) from None
        if answer.status_code >= 500:
            raise Ambiguous(f"HTTP {answer.status_code}")
        if answer.status_code >= 400:
            raise NotSent(f"HTTP {answer.status_code}")
        try:
            return parse_response(answer.content)
        except MalformedResponse as error:
            raise Ambiguous(str(error)) from None

    async def aclose(self) -> None:
        await self._http.aclose()
