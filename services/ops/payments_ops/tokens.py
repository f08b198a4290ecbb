"""`payments-ops token create`: mint a development bearer token signed with PAYMENTS_JWT_SECRET."""

from __future__ import annotations

import argparse
import time
from typing import Any

import jwt
from payments_shared.settings import JwtSettings, load


def register(commands: Any) -> None:
    token = commands.add_parser("token", help="bearer tokens").add_subparsers(dest="token_command", required=True)
    create = token.add_parser("create", help="mint a token; prints only the token")
    create.add_argument("--workspace", required=True)
    create.add_argument("--permissions", required=True, help="comma-separated, e.g. payments:admin,customer:read")
    create.add_argument("--sub", default="payments-ops")
    create.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    create.set_defaults(run=create_token)


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
    permissions = [p.strip() for p in arguments.permissions.split(",") if p.strip()]
    print(mint(load(JwtSettings), arguments.workspace, permissions, arguments.sub, arguments.ttl))
    return 0
