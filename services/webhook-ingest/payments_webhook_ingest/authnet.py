"""Authorize.net webhooks: `X-ANET-Signature: sha512=<HEX>`, HMAC-SHA512 of the raw body keyed with the
Signature Key's characters as given (their UTF-8 bytes, not hex-decoded); the hex is compared without regard to
case (Authorize.net sends upper case) and in constant time."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from payments_shared.timestamps import api_timestamp

from payments_webhook_ingest.event import (
    ProviderEvent,
    event_id,
    invalid_signature,
    json_object,
    not_provider_json,
    optional_text,
    required_text,
)

PROVIDER = "authnet"
SIGNATURE_HEADER = "x-anet-signature"
_PREFIX = "sha512="


def verify(body: bytes, header: str | None, signature_key: str) -> None:
    if not header:
        raise invalid_signature("No X-ANET-Signature header.")
    header = header.strip()
    if not header.lower().startswith(_PREFIX):
        raise invalid_signature("X-ANET-Signature must start with sha512=.")
    given = header[len(_PREFIX) :].strip().upper().encode("latin-1", "replace")
    expected = hmac.new(signature_key.encode("utf-8"), body, hashlib.sha512).hexdigest().upper().encode()
    if not hmac.compare_digest(expected, given):
        raise invalid_signature("The signature does not match the payload.")


def _event_date(value: str) -> str:
    """`2017-03-29T20:48:02.0080095Z` (seven fraction digits) → ISO with microseconds."""
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        zone = rest.lstrip("0123456789")
        digits = rest[: len(rest) - len(zone)]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise not_provider_json(PROVIDER, "eventDate is not a date") from None
    if moment.tzinfo is None:
        raise not_provider_json(PROVIDER, "eventDate has no time zone")
    try:
        return api_timestamp(moment)
    except OverflowError:  # 0001-01-01T00:00:00+05:00: its offset moves it out of the calendar
        raise not_provider_json(PROVIDER, "eventDate is out of range") from None


def parse(body: bytes) -> ProviderEvent:
    """An Authorize.net notification (`{"notificationId", "eventType", "eventDate", "payload": {…}}`) or 400."""
    data = json_object(PROVIDER, body)
    identifier = event_id(PROVIDER, data, "notificationId")
    event_type = required_text(PROVIDER, data, "eventType")
    created = _event_date(required_text(PROVIDER, data, "eventDate"))
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise not_provider_json(PROVIDER, "no payload")
    return ProviderEvent(
        provider=PROVIDER,
        event_id=identifier,
        type=event_type,
        object_id=optional_text(payload.get("id")),
        object_type=optional_text(payload.get("entityName")),
        provider_created=created,
        payload=data,
    )
