"""Stripe webhooks: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 of `{t}.{raw body}`.

Any `v1` matching any configured secret verifies (secret rotation); a timestamp more than the tolerance away
from now, in the past or in the future, is refused (Stripe's own library only refuses old ones).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from payments_shared.timestamps import unix_seconds_iso

from payments_webhook_ingest.event import (
    ProviderEvent,
    event_id,
    invalid_signature,
    json_object,
    not_provider_json,
    optional_text,
    required_text,
)

PROVIDER = "stripe"
SIGNATURE_HEADER = "stripe-signature"
TIMESTAMP_DIGITS = 12  # Unix seconds (10 digits until 2286); a longer one would overflow the tolerance check


def _parse_header(header: str) -> tuple[str, list[str]]:
    timestamp: str | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            raise invalid_signature("Malformed Stripe-Signature header.")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > TIMESTAMP_DIGITS:
        raise invalid_signature("Stripe-Signature has no valid timestamp.")
    if not signatures:
        raise invalid_signature("Stripe-Signature has no v1 signature.")
    return timestamp, signatures


def verify(body: bytes, header: str | None, secrets: Sequence[str], now: float, tolerance_s: int) -> None:
    """Raise 400 `invalid_signature` unless `header` signs `body` with one of `secrets` within the tolerance."""
    if not header:
        raise invalid_signature("No Stripe-Signature header.")
    timestamp, signatures = _parse_header(header)
    if abs(now - int(timestamp)) > tolerance_s:
        raise invalid_signature("The Stripe-Signature timestamp is outside the tolerance.")
    signed = timestamp.encode() + b"." + body
    given = [signature.encode("latin-1", "replace") for signature in signatures]
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
        if any(hmac.compare_digest(expected, signature) for signature in given):
            return
    raise invalid_signature("No signature matches the payload.")


def parse(body: bytes) -> ProviderEvent:
    """A Stripe event (`{"id": "evt_…", "type", "created", "data": {"object": {…}}}`) or 400."""
    data = json_object(PROVIDER, body)
    identifier = event_id(PROVIDER, data, "id")
    event_type = required_text(PROVIDER, data, "type")
    created = data.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise not_provider_json(PROVIDER, "no created timestamp")
    provider_created = unix_seconds_iso(created)
    if provider_created is None:
        raise not_provider_json(PROVIDER, "created is out of range")
    inner = data.get("data")
    obj = inner.get("object") if isinstance(inner, dict) else None
    if not isinstance(obj, dict):
        raise not_provider_json(PROVIDER, "no data.object")
    return ProviderEvent(
        provider=PROVIDER,
        event_id=identifier,
        type=event_type,
        object_id=optional_text(obj.get("id")),
        object_type=optional_text(obj.get("object")),
        provider_created=provider_created,
        payload=data,
    )
