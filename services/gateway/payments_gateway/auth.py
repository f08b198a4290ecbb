"""Bearer-token authentication (PyJWT, HS256 pinned) and the route permissions of API.md.

A token must carry `exp`, `sub`, `workspace` and `permissions` (a list of strings); `iss`/`aud` are checked when
configured. Those strings must be valid Unicode (no lone surrogate): they reach the event store, ids and read
models, none of which can write one as UTF-8; `sub` and `workspace` must also not be blank nor hold a control
character. `exp`, `nbf` and `iat` must be JSON numbers (RFC 7519's NumericDate). An issuer's clock may run ahead
of this one: `nbf` and `iat` may lie up to CLOCK_SKEW_S in the future (PyJWT refuses one a second ahead, so a
slightly fast issuer's fresh tokens failed now and then). `exp` has no such leeway: expired is expired.
Any failure is 401 `authentication_error` without saying more than needed (and never echoing the token); a valid
token without the route's permission is 403 `permission_error`.
"""

from __future__ import annotations

import json
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import jwt
from payments_shared.errors import ApiError
from payments_shared.unicode_text import is_encodable, is_name_text
from starlette.datastructures import Headers

from payments_gateway.body import unique_keys

ALGORITHMS = ["HS256"]  # pinned: never taken from the token, never `none`
ADMIN_PERMISSION = "payments:admin"
VERIFIED_TOKENS_KEPT: Final = 1024
NUMERIC_DATES: Final = ("exp", "nbf", "iat")
CLOCK_SKEW_S: Final = 60.0


@dataclass(frozen=True)
class Principal:
    actor: str  # the token's `sub`, recorded on every event
    workspace: str
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        if permission in self.permissions:
            return True
        return permission.startswith("payments:") and ADMIN_PERMISSION in self.permissions


def unauthenticated(message: str) -> ApiError:
    return ApiError("authentication_error", message, code="invalid_token")


def forbidden(permission: str) -> ApiError:
    return ApiError("permission_error", f"This token lacks the permission {permission}.", code="missing_permission")


class _UniqueClaimsJWT(jwt.PyJWT):
    """PyJWT, refusing a payload that names a claim twice (RFC 7519 §4 lets a parser take the last): a proxy that
    read the first `workspace` and this gateway the last would disagree about the tenant. Runs once the signature
    is verified."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            payload = json.loads(decoded["payload"], object_pairs_hook=unique_keys)  # a key twice: ValueError
        except (ValueError, RecursionError) as error:
            raise jwt.DecodeError(f"Invalid payload string: {error}") from error
        if not isinstance(payload, dict):
            raise jwt.DecodeError("Invalid payload string: must be a json object")
        _check_numeric_dates(payload)  # before PyJWT reads them (it takes `"exp": true` for 1: "expired")
        return payload


_JWT: Final = _UniqueClaimsJWT()


class TokenVerifier:
    def __init__(self, secret: str, issuer: str | None = None, audience: str | None = None) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        # Verified tokens, each kept until its own `exp`: a client sends the same token on every request, and
        # verifying it is a large share of a request's CPU. Keyed by the whole token (signature included), so
        # only a token that verified before can hit.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def principal(self, authorization: str | None) -> Principal:
        token = _bearer_token(authorization)
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        claims = self._decode(token)
        principal = _principal_from(claims)
        self._remember(token, principal, float(claims["exp"]))
        return principal

    def _remember(self, token: str, principal: Principal, expires_at: float) -> None:
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)  # the oldest

    def _decode(self, token: str) -> dict[str, Any]:
        required = ["exp", "sub"] + (["iss"] if self._issuer else []) + (["aud"] if self._audience else [])
        try:
            claims: dict[str, Any] = _JWT.decode(
                token,
                self._secret,
                algorithms=ALGORITHMS,
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "require": required,
                    "verify_aud": self._audience is not None,
                    "verify_nbf": False,  # checked below, with CLOCK_SKEW_S
                    "verify_iat": False,
                },
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("The token has expired.") from None
        except jwt.InvalidTokenError:
            raise unauthenticated("Invalid bearer token.") from None
        _check_not_before(claims, time.time())
        return claims


def _check_not_before(claims: dict[str, Any], now: float) -> None:
    """`nbf` (not valid before) and `iat` (issued at) no further in the future than the clocks may differ."""
    if any(claims.get(name, now) > now + CLOCK_SKEW_S for name in ("nbf", "iat")):
        raise unauthenticated("The token is not valid yet.")


def _check_numeric_dates(claims: dict[str, Any]) -> None:
    """PyJWT takes any value int() accepts (`"exp": "1795778135"`, `true`); a NumericDate is a JSON number, and one
    a float holds (the expiry is kept as one)."""
    for name in NUMERIC_DATES:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise unauthenticated(f"The token's {name} claim must be a number.")
        if abs(value) > sys.float_info.max:
            raise unauthenticated(f"The token's {name} claim is out of range.")


def authorization_header(headers: Headers) -> str | None:
    """The one Authorization header. Two are refused, not resolved: components that pick a different one (a proxy
    the first, this gateway the last) would disagree on who is calling."""
    values = headers.getlist("authorization")
    if len(values) > 1:
        raise unauthenticated("Send one Authorization header.")
    return values[0] if values else None


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthenticated("Missing Authorization header: send 'Authorization: Bearer <token>'.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def _principal_from(claims: dict[str, Any]) -> Principal:
    actor, workspace, permissions = claims.get("sub"), claims.get("workspace"), claims.get("permissions")
    if not isinstance(actor, str) or not actor:
        raise unauthenticated("The token's sub claim must be a non-empty string.")
    if not isinstance(workspace, str) or not workspace:
        raise unauthenticated("The token has no workspace claim.")
    if not (is_name_text(actor) and is_name_text(workspace)):
        raise unauthenticated("The token's sub and workspace must be text: not blank, no control characters.")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise unauthenticated("The token's permissions claim must be a list of strings.")
    if not all(is_encodable(text) for text in (actor, workspace, *permissions)):
        raise unauthenticated("The token's sub, workspace and permissions must be valid Unicode.")
    return Principal(actor=actor, workspace=workspace, permissions=frozenset(permissions))
