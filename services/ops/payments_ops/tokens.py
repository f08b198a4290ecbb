"""`payments-ops token create`: mint a development bearer token signed with PAYMENTS_JWT_SECRET."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

import jwt
from payments_shared.settings import JwtSettings, load
from payments_shared.unicode_text import is_encodable, is_name_text

PERMISSION = re.compile(r"[a-z]+:[a-z*]+")


def register(commands: Any) -> None:
    token = commands.add_parser("token", help="bearer tokens").add_subparsers(dest="token_command", required=True)
    create = token.add_parser("create", help="mint a token; prints only the token")
    create.add_argument("--workspace", required=True, type=claim_text)
    create.add_argument(
        "--permissions", required=True, type=permission_list, help="comma-separated, e.g. payments:admin,customer:read"
    )
    create.add_argument("--sub", default="payments-ops", type=claim_text)
    create.add_argument("--ttl", type=positive_seconds, default=3600, help="seconds until it expires (default 3600)")
    create.set_defaults(run=create_token)


def claim_text(value: str) -> str:
    """A `--workspace` or `--sub`: not empty, and UTF-8 (bytes that are not decode to lone surrogates)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty (the gateway refuses a token without it)")
    if not is_encodable(value):
        raise argparse.ArgumentTypeError("is not valid UTF-8 text (the gateway refuses a token holding it)")
    if not is_name_text(value):
        raise argparse.ArgumentTypeError("must not hold a control character (the gateway refuses a token holding one)")
    return value


def permission_list(value: str) -> list[str]:
    """`a:b,c:d` → ["a:b", "c:d"]: at least one, each `scope:action` (API.md's table)."""
    permissions = [permission.strip() for permission in value.split(",") if permission.strip()]
    malformed = [permission for permission in permissions if not PERMISSION.fullmatch(permission)]
    if not permissions or malformed:
        raise argparse.ArgumentTypeError(f"{value!r} is not a list of scope:action permissions, e.g. payments:admin")
    return permissions


def positive_seconds(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


def mint(settings: JwtSettings, workspace: str, permissions: list[str], sub: str, ttl: int) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "workspace": workspace,
        "permissions": permissions,
        "iat": now,
        "exp": now + ttl,
    }
    if settings.payments_jwt_issuer:
        claims["iss"] = settings.payments_jwt_issuer
    if settings.payments_jwt_audience:
        claims["aud"] = settings.payments_jwt_audience
    return jwt.encode(claims, settings.payments_jwt_secret, algorithm="HS256")


def create_token(arguments: argparse.Namespace) -> int:
    print(mint(load(JwtSettings), arguments.workspace, arguments.permissions, arguments.sub, arguments.ttl))
    return 0
