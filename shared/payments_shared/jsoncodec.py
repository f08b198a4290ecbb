"""JSON for what the platform writes and reads itself: stored events, broker messages and replies, the sandbox
ledger and the gateway's JSON responses. orjson is several times faster than the standard library on these small
objects (about 9 % of the instructions of a charge went to `json` before); what orjson refuses falls back to the
standard library, so nothing that `json` accepted before is refused now:
- on write, integers beyond 64 bits, non-string keys and strings with lone surrogates (written `\\udxxx`, as
  `json.dumps` escapes them);
- on read, JSON text holding such an escaped lone surrogate (stored by an earlier write).

Output is compact (`{"a":1}`), UTF-8, keys in insertion order. Dataclasses and datetimes are refused as `json`
refuses them, so a message body holding one fails here rather than reaching a wire as something else.
The request-body parser (payments_gateway.body) and idempotency fingerprints (payments_shared.ids) keep the
standard library: their exact behaviour is part of the API and of stored keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import orjson

_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def dumps_bytes(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON. Raises TypeError/ValueError for what `json.dumps` refuses."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    """`value` as compact JSON text."""
    return dumps_bytes(value).decode()


def detached_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    """`value` as the other side of a wire would read it: a copy through JSON (so it must be serialisable)."""
    copied: dict[str, Any] = loads(dumps_bytes(dict(value)))
    return copied


def loads(text: str | bytes) -> Any:
    """The value of JSON text. Raises ValueError (json.JSONDecodeError) for what `json.loads` refuses."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
