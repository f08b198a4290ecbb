"""Identifiers: random ones for new objects, derived ones for idempotent commands."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

_IDEMPOTENCY_NAMESPACE = uuid.UUID("5f0c1bd6-9a0e-4f4e-9d59-2e7d1d7a3a21")


# Ids are written in 16 letters instead of hex digits: an id can then never hold a run of digits that the
# card-data guard (a Luhn-valid run of 13-19 digits) would take for a card number when a client sends it back.
_LETTERS = "abcdefghijklmnop"


def letters(raw: bytes) -> str:
    """`raw` as two letters a byte (a-p), like hex without digits."""
    return "".join(_LETTERS[byte >> 4] + _LETTERS[byte & 15] for byte in raw)


def new_id(prefix: str) -> str:
    return f"{prefix}_{letters(secrets.token_bytes(12))}"


def command_id(workspace: str, idempotency_key: str | None) -> str:
    """Derived from the key (so a retried request is the same command), random without one."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{workspace}\x00{idempotency_key}"))


def derived_id(prefix: str, from_command_id: str) -> str:
    """The id of the object a creating command makes: the same command always makes the same object."""
    return f"{prefix}_{letters(uuid.UUID(from_command_id).bytes[:12])}"


def fingerprint(route: str, body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()
