"""The `Idempotency-Key` header: 1–255 printable ASCII characters; anything else is 400 on `Idempotency-Key`."""

from __future__ import annotations

import re

from fastapi import Request
from payments_shared.errors import invalid

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


def idempotency_key(request: Request) -> str | None:
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise invalid("Send one Idempotency-Key header.", param=HEADER)
    key = values[0]
    if not _VALID_KEY.match(key):
        raise invalid("Idempotency-Key must be 1 to 255 printable ASCII characters.", param=HEADER)
    return key
