"""Identifiers: random ones for new objects, derived ones for idempotent commands."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

_IDEMPOTENCY_NAMESPACE = uuid.UUID("5f0c1bd6-9a0e-4f4e-9d59-2e7d1d7a3a21")

# These UUID helpers give exactly what str(uuid.uuid4()), str(uuid.uuid5(...)) and uuid.UUID(text).bytes give, but
# faster: several run on every request, and building and checking UUID objects costs more than the hashing.

# The variant digit (RFC 4122: binary 10xx) for each hex digit the random or hashed bits put there.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


def _uuid_str(digits: str, version: int) -> str:
    """The canonical text of a UUID from (at least) 32 hex digits, with the version and variant set."""
    variant = _VARIANT_DIGIT[digits[16]]
    return f"{digits[:8]}-{digits[8:12]}-{version}{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:32]}"


def random_uuid_str() -> str:
    """`str(uuid.uuid4())`."""
    return _uuid_str(os.urandom(16).hex(), 4)


def time_ordered_uuid() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): Unix milliseconds in the top 48 bits, then 74 random bits. New event ids: ids made one
    after another land next to each other in the event store's id index instead of anywhere in it (the SQLite
    store appends ~1.5× faster once it holds 600,000 events; bench/store_growth.py). Python 3.14's uuid.uuid7."""
    random_bits = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = (random_bits >> 62) & 0xFFF, random_bits & ((1 << 62) - 1)
    return uuid.UUID(int=(time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def uuid5_str(namespace: uuid.UUID, name: str) -> str:
    """`str(uuid.uuid5(namespace, name))`."""
    return _uuid_str(hashlib.sha1(namespace.bytes + name.encode()).hexdigest(), 5)


def uuid_bytes(text: str) -> bytes:
    """`uuid.UUID(text).bytes`; the usual form (32 hex digits and hyphens) is read without building a UUID."""
    hex_digits = text.replace("-", "")
    return bytes.fromhex(hex_digits) if _HEX32.fullmatch(hex_digits) else uuid.UUID(text).bytes


# Ids are written in 16 letters instead of hex digits: an id can then never hold a run of digits that the
# card-data guard (a Luhn-valid run of 13-19 digits) would take for a card number when a client sends it back.
_HEX_TO_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


def letters(raw: bytes) -> str:
    """`raw` as two letters a byte (a-p), like hex without digits."""
    return raw.hex().translate(_HEX_TO_LETTERS)


def new_id(prefix: str) -> str:
    return f"{prefix}_{letters(secrets.token_bytes(12))}"


def command_id(workspace: str, idempotency_key: str | None) -> str:
    """Derived from the key (so a retried request is the same command), random without one."""
    if idempotency_key is None:
        return random_uuid_str()
    return uuid5_str(_IDEMPOTENCY_NAMESPACE, f"{workspace}\x00{idempotency_key}")


def derived_id(prefix: str, from_command_id: str) -> str:
    """The id of the object a creating command makes: the same command always makes the same object."""
    return f"{prefix}_{letters(uuid_bytes(from_command_id)[:12])}"


def fingerprint(route: str, body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()
