"""Stripe webhook events as Stripe sends them: the event envelope and its `Stripe-Signature` header."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any


def stripe_signature_headers(body: bytes, secret: str) -> dict[str, str]:
    """The headers of a delivery of `body`, signed now with the endpoint's `secret` (scheme v1)."""
    now = int(time.time())
    signature = hmac.new(secret.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={now},v1={signature}", "Content-Type": "application/json"}


def signed_stripe_event(
    secret: str, event_type: str, obj: dict[str, Any], created: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A new event about `obj` (created now unless given), and its signed headers."""
    at = int(time.time()) if created is None else created
    event = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": event_type, "created": at}
    body = json.dumps({**event, "data": {"object": obj}}).encode()
    return body, stripe_signature_headers(body, secret)
