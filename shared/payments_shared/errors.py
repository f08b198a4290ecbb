"""API.md's error shape, shared by the gateway, webhook-ingest and the workers' replies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from payments_shared.unicode_text import encodable

MAX_ECHOED_NAME: Final = 100
# The longest Retry-After an answer of ours passes on or a recovery sweep waits out: an unresolved Stripe re-drive's
# hour. A provider's larger one (or a key released with one) would leave a command unswept for years.
LONGEST_RETRY_AFTER_S: Final = 3600.0
# The code of a 503 whose re-drive was left unresolved (several provider objects may be its first attempt's): an
# operator decides; a retry before its Retry-After gets the same answer without the provider being asked.
REDRIVE_UNRESOLVED: Final = "redrive_unresolved"


def bounded_retry_after(seconds: Any) -> float | None:
    """A Retry-After as we pass it on or wait it out: between 0 and `LONGEST_RETRY_AFTER_S`; None when it is not a
    finite number (absent, a date, `inf`, `nan`)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return None
    return min(max(float(seconds), 0.0), LONGEST_RETRY_AFTER_S)


STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "card_error": 402,
    "not_found": 404,
    "conflict": 409,
    "idempotency_error": 422,
    "rate_limit_error": 429,
    "provider_error": 502,
    "provider_unavailable": 503,
}


BEARER_CHALLENGE: Final = 'Bearer realm="payments"'  # RFC 6750's scheme for the bearer tokens API.md asks for


@dataclass
class ApiError(Exception):
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    transaction_id: str | None = None
    decline_code: str | None = None
    retry_after: float | None = None
    status: int = 0

    def __post_init__(self) -> None:
        if not self.status:
            self.status = STATUS_BY_TYPE[self.type]
        if self.code is None:
            self.code = self.type

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        for key in ("param", "transaction_id", "decline_code"):
            value = getattr(self, key)
            if value is not None:
                error[key] = value
        return {"error": error}

    def headers(self) -> dict[str, str]:
        headers = {"WWW-Authenticate": BEARER_CHALLENGE} if self.status == 401 else {}  # RFC 9110: every 401 has one
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after)))
        return headers


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError("invalid_request_error", message, code=code, param=param)


def not_found(what: str, param: str | None = "id") -> ApiError:
    return ApiError("not_found", f"No such {what}", code="resource_missing", param=param)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError("conflict", message, code=code)


def echoed(name: str) -> str:
    """A client's field or parameter name as an error echoes it: a 100 kB name is not sent back whole (twice),
    and a lone surrogate in it becomes U+FFFD."""
    return encodable(name if len(name) <= MAX_ECHOED_NAME else f"{name[:MAX_ECHOED_NAME]}…")
