"""Identifiers: random ones for new objects, derived ones for idempotent commands."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

_IDEMPOTENCY_NAMESPACE = uuid.UUID("5f0c1bd6-9a0e-4f4e-9d59-2e7d1d7a3a21")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def command_id(workspace: str, idempotency_key: str | None) -> str:
    """Derived from the key (so a retried request is the same command), random without one."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{workspace}\x00{idempotency_key}"))


def derived_id(prefix: str, from_command_id: str) -> str:
    """The id of the object a creating command makes: the same command always makes the same object."""
    return f"{prefix}_{uuid.UUID(from_command_id).hex[:24]}"


def fingerprint(route: str, body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()
