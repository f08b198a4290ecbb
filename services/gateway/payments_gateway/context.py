"""What every route needs, built once per app: token verifier, rate limiter and budgets, worker client.

Routes get it, with the caller's principal, from their one dependency `Depends(Authorized(permission, bucket))`,
which authenticates, checks the permission and spends one unit of the workspace's read or write budget — in
that order, so an anonymous client cannot drain a workspace's budget — and then refuses card data in the path, and
a query string on every route but the lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fastapi import Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from limits import RateLimitItem
from payments_shared.broker.port import Broker
from payments_shared.carddata import contains_card_number
from payments_shared.ratelimit import RateLimiter, parse_limit

from payments_gateway.auth import Principal, TokenVerifier, authorization_header, forbidden
from payments_gateway.body import raw_card_data_error
from payments_gateway.query_string import refuse_query_parameters
from payments_gateway.rpc import WorkerClient
from payments_gateway.settings import GatewaySettings


class Bucket(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class GatewayContext:
    settings: GatewaySettings
    tokens: TokenVerifier
    limiter: RateLimiter
    budgets: dict[Bucket, RateLimitItem]
    worker: WorkerClient

    @classmethod
    def build(cls, settings: GatewaySettings, broker: Broker) -> GatewayContext:
        return cls(
            settings=settings,
            tokens=TokenVerifier(
                settings.payments_jwt_secret, settings.payments_jwt_issuer, settings.payments_jwt_audience
            ),
            limiter=RateLimiter(settings.rate_limit_storage),
            budgets={
                Bucket.READ: parse_limit(settings.rate_limit_read),
                Bucket.WRITE: parse_limit(settings.rate_limit_write),
            },
            worker=WorkerClient(broker, settings.rpc_timeout_s),
        )


@dataclass(frozen=True)
class Caller:
    """An authorised request's principal, with the gateway's context."""

    context: GatewayContext
    principal: Principal


class Authorized(SecurityBase):
    """A route's one dependency (each extra one costs FastAPI's dependency solving on every request).

    Being a SecurityBase with HTTPBearer's model and name, it documents the bearer scheme in OpenAPI as
    `HTTPBearer(bearerFormat="JWT")` would; the header itself is checked by TokenVerifier (401 in API.md's shape).
    """

    def __init__(self, permission: str, bucket: Bucket, takes_query: bool = False) -> None:
        self.model = HTTPBearerModel(bearerFormat="JWT")
        self.scheme_name = "HTTPBearer"
        self._permission = permission
        self._bucket = bucket
        self._takes_query = takes_query

    @property
    def permission(self) -> str:
        """The permission the route asks for (documented in OpenAPI: openapi_docs)."""
        return self._permission

    async def __call__(self, request: Request) -> Caller:  # async: a plain def would cost a thread hop
        context: GatewayContext = request.app.state.gateway
        principal = context.tokens.principal(authorization_header(request.headers))
        if not principal.may(self._permission):
            raise forbidden(self._permission)
        await context.limiter.check(context.budgets[self._bucket], "workspace", principal.workspace, self._bucket.value)
        refuse_card_data_in_path(request)
        if not self._takes_query:
            refuse_query_parameters(request)
        return Caller(context, principal)


def refuse_card_data_in_path(request: Request) -> None:
    """An id in the URL is never echoed, but a write records it (its command, its key's claim) before finding it
    unknown: one holding a card number is refused as card data, as anywhere else in a request."""
    if any(contains_card_number(str(value)) for value in request.path_params.values()):
        raise raw_card_data_error()
