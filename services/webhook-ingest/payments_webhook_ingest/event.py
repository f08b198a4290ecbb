"""A verified provider event as webhook-ingest understands it, and the errors its checks raise."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from payments_shared.errors import ApiError, invalid
from payments_shared.unicode_text import find_unencodable_text

# Event ids become part of a stream name: keep them to what Stripe and Authorize.net actually send.
_SAFE_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


@dataclass(frozen=True)
class ProviderEvent:
    provider: str  # stripe | authnet
    event_id: str
    type: str
    object_id: str | None  # the provider's id of the object the event is about (pi_…, sub_…, a transId)
    object_type: str | None
    provider_created: str  # the provider's timestamp, ISO 8601 UTC with microseconds (sorts as text)
    payload: Mapping[str, Any]  # the whole parsed body


def invalid_signature(message: str) -> ApiError:
    return invalid(message, code="invalid_signature")


def not_provider_json(provider: str, reason: str) -> ApiError:
    return invalid(f"The body is not a valid {provider} event: {reason}.", code="invalid_payload")


# API.md's 503 carries Retry-After; a provider retries anyway, and a secret is not set in seconds.
NOT_CONFIGURED_RETRY_AFTER_S: Final = 300.0


def webhook_not_configured(variable: str) -> ApiError:
    message = f"Webhooks from this provider are not configured ({variable})"
    return ApiError("provider_unavailable", message, code="not_configured", retry_after=NOT_CONFIGURED_RETRY_AFTER_S)


def json_object(provider: str, body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise not_provider_json(provider, "not JSON") from None
    except RecursionError:
        raise not_provider_json(provider, "nested too deeply") from None
    if not isinstance(parsed, dict):
        raise not_provider_json(provider, "not a JSON object")
    if find_unencodable_text(parsed) is not None:  # could be neither stored nor shown
        raise not_provider_json(provider, "text that is not valid Unicode (a lone surrogate)")
    return parsed


def required_text(provider: str, data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise not_provider_json(provider, f"no {key}")
    return value


def event_id(provider: str, data: Mapping[str, Any], key: str) -> str:
    value = required_text(provider, data, key)
    if not _SAFE_EVENT_ID.match(value):
        raise not_provider_json(provider, f"{key} has unexpected characters")
    return value


def optional_text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
