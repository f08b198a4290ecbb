"""What every route needs, built once per app: token verifier, rate limiter and budgets, worker client.

Routes get it with `Depends(gateway_context)` and authorise with `Depends(authorized(permission, bucket))`,
which authenticates, checks the permission and spends one unit of the workspace's read or write budget — in
that order, so an anonymous client cannot drain a workspace's budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem
from payments_shared.broker.port import Broker
from payments_shared.ratelimit import RateLimiter, parse_limit

from payments_gateway.auth import Principal, TokenVerifier, forbidden
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


async def gateway_context(request: Request) -> GatewayContext:  # async: a plain def would cost a thread hop
    context: GatewayContext = request.app.state.gateway
    return context


# Documents the bearer scheme in OpenAPI; the header itself is checked by TokenVerifier (401 in API.md's shape).
_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT")


def authorized(permission: str, bucket: Bucket) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        context: Annotated[GatewayContext, Depends(gateway_context)],
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal = context.tokens.principal(request.headers.get("authorization"))
        if not principal.may(permission):
            raise forbidden(permission)
        await context.limiter.check(context.budgets[bucket], "workspace", principal.workspace, bucket.value)
        return principal

    return dependency
