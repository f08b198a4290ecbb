"""What a Stripe error means for us: the `ProviderResult` each `stripe.StripeError` class maps to.

Pure: no I/O. The adapter logs (authentication failures, once) and records the ids it created; this module only
classifies. Messages are Stripe's own where they help a client (declines, invalid parameters), scrubbed of keys,
tokens and client secrets; for authentication and permission failures Stripe's message (which echoes part of the
key) is replaced by ours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import stripe

from payments_shared.errors import bounded_retry_after
from payments_shared.logging import scrub
from payments_shared.providers.port import Outcome, ProviderResult

# Stripe parameter (its top-level name) → our request field, for the parameters a client gave us and can fix.
_OUR_FIELD_BY_STRIPE_PARAM = {
    "payment_method": "payment_method",
    "amount": "amount",
    "amount_to_capture": "amount",
    "currency": "currency",
    "customer": "customer_id",
    "metadata": "metadata",
    "description": "description",
    "email": "email",
    "name": "name",
    "phone": "phone",
    "price": "price",
    "plan": "price",
    "quantity": "quantity",
    "trial_period_days": "trial_days",
    "interval": "interval",
    "interval_count": "interval_count",
}
_ITEM_PARAM = re.compile(r"^items\[\d+\]\[(\w+)\]")
# Client secrets (pi_…_secret_…) and payment tokens: a client's own, but never echoed back in an error.
_TOKENS = re.compile(
    r"\b[a-z]+_[A-Za-z0-9]+_secret_[A-Za-z0-9]+\b"
    r"|\b(?:tok|btok|pm|src|ba)_[A-Za-z0-9_]+\b"
)
_IDEMPOTENT_REQUEST_IN_PROGRESS = 409  # Stripe: another request with this Idempotency-Key is still running
# Stripe error codes that refuse a request in the payment's present state (the dashboard or an expired
# authorization changed it before its webhook arrived): API.md's 409, not a provider failure.
_STATE_CONFLICTS = frozenset(
    {
        "payment_intent_unexpected_state",
        "charge_already_captured",
        "charge_already_refunded",
        "charge_disputed",
        "charge_expired_for_capture",
    }
)


def safe_message(message: str | None) -> str | None:
    """Stripe's message with keys, tokens, client secrets and card numbers removed."""
    if message is None:
        return None
    return _TOKENS.sub("[token removed]", scrub(message))


def our_field(stripe_param: str | None) -> str | None:
    """The request field a client can fix, for a parameter Stripe named; None when it is ours (a bug)."""
    if not stripe_param:
        return None
    item = _ITEM_PARAM.match(stripe_param)
    top_level = item.group(1) if item else stripe_param.split("[", 1)[0]
    return _OUR_FIELD_BY_STRIPE_PARAM.get(top_level)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After in seconds when Stripe sent it as a finite number (the only form it uses), at most
    `LONGEST_RETRY_AFTER_S`."""
    if not headers:
        return None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value)
            except ValueError:
                return None
            return bounded_retry_after(seconds)
    return None


def _error_fields(error: stripe.StripeError) -> dict[str, Any]:
    body = error.json_body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return dict(body["error"])
    return {}


def _ids_named_by(fields: Mapping[str, Any]) -> dict[str, str]:
    """Objects Stripe created although it answered with an error (a declined PaymentIntent, its charge)."""
    ids: dict[str, str] = {}
    intent = fields.get("payment_intent")
    if isinstance(intent, Mapping) and isinstance(intent.get("id"), str):
        ids["payment_intent"] = intent["id"]
    charge = fields.get("charge")
    if isinstance(charge, str):
        ids["charge"] = charge
    return ids


def declined(error: stripe.CardError) -> ProviderResult:
    fields = _error_fields(error)
    code = fields.get("code") or error.code
    decline_code = fields.get("decline_code") or code or "card_declined"
    ids = _ids_named_by(fields)
    return ProviderResult(
        Outcome.DECLINED,
        reference=ids.get("payment_intent"),
        decline_code=str(decline_code),
        message=safe_message(fields.get("message") or error.user_message) or "The card was declined.",
        details={**ids, "stripe_code": code} if code else ids,
    )


def _permanent(message: str, code: str | None, details: Mapping[str, Any] | None = None) -> ProviderResult:
    extra = dict(details or {})
    if code:
        extra["stripe_code"] = code
    return ProviderResult(Outcome.PERMANENT, message=message, details=extra)


def _retryable(message: str, error: stripe.StripeError) -> ProviderResult:
    return ProviderResult(
        Outcome.RETRYABLE,
        message=message,
        retry_after=retry_after_seconds(error.headers),
        details={"http_status": error.http_status} if error.http_status else {},
    )


def result_for_error(error: stripe.StripeError) -> ProviderResult:
    """The outcome a Stripe error stands for. Order matters: CardError and IdempotencyError before the generic."""
    fields = _error_fields(error)
    if isinstance(error, stripe.CardError):
        return declined(error)
    if isinstance(error, stripe.RateLimitError):
        return _retryable("Stripe is rate limiting requests", error)
    if isinstance(error, stripe.APIConnectionError):
        return _retryable("Stripe did not answer (network error or timeout)", error)
    if isinstance(error, stripe.IdempotencyError):
        return _permanent("Stripe refused a reused idempotency key with different parameters", "idempotency_error")
    if isinstance(error, stripe.AuthenticationError):
        return _permanent("Stripe rejected the API key (check STRIPE_API_KEY)", "authentication_error")
    if isinstance(error, stripe.PermissionError):
        return _permanent("The Stripe API key lacks the permission for this request", "permission_error")
    if isinstance(error, stripe.InvalidRequestError):
        code = fields.get("code") or error.code
        message = safe_message(fields.get("message") or error.user_message) or "Stripe refused the request"
        if code in _STATE_CONFLICTS:
            return _permanent(message, code, {"conflict": code})
        field = our_field(fields.get("param") or error.param)
        return _permanent(message, code, {"invalid_param": field} if field else None)
    status = error.http_status or 0
    if status >= 500 or status == _IDEMPOTENT_REQUEST_IN_PROGRESS:
        return _retryable(f"Stripe answered {status}", error)
    message = safe_message(fields.get("message") or error.user_message) or f"Stripe answered {status}"
    return _permanent(message, fields.get("code") or error.code)


def refund_refusal(result: ProviderResult) -> ProviderResult:
    """Stripe refuses a refund above what remains refundable (`amount_too_large`, a refund made elsewhere not yet
    known here) as a bad `amount`; API.md makes it a 409 conflict, as our own check of the amount answers it."""
    if result.outcome is not Outcome.PERMANENT or result.details.get("stripe_code") != "amount_too_large":
        return result
    details = {key: value for key, value in result.details.items() if key != "invalid_param"}
    return replace(result, details={**details, "conflict": "amount_too_large"})


def is_authentication_failure(error: stripe.StripeError) -> bool:
    return isinstance(error, (stripe.AuthenticationError, stripe.PermissionError))


def is_missing_object(error: stripe.StripeError) -> bool:
    """A 404 resource_missing: what a repeated delete of an object already gone answers."""
    return isinstance(error, stripe.InvalidRequestError) and (
        error.http_status == 404 or _error_fields(error).get("code") == "resource_missing"
    )
