"""What a provider's answer means for a billing command: carry on, or which API.md error to reply."""

from __future__ import annotations

from payments_shared.errors import REDRIVE_UNRESOLVED, ApiError, conflict, invalid
from payments_shared.providers.port import Outcome, ProviderResult

RETRY_AFTER_S = 2.0


def unsupported(provider: str, result: ProviderResult) -> ApiError:
    message = result.message or f"The {provider} provider does not support this operation."
    return ApiError("invalid_request_error", message, code="provider_unsupported")


def provider_error(provider: str, result: ProviderResult) -> ApiError:
    """The error for any result that is not a success the command can record."""
    if result.details.get("unsupported"):
        return unsupported(provider, result)
    param = result.details.get("invalid_param")
    if isinstance(param, str):
        return invalid(result.message or f"Invalid {param}.", param=param, code=result.refusal_code)
    if result.outcome is Outcome.PERMANENT and result.details.get("stripe_code") == "resource_missing":
        # The object is gone at the provider (a customer deleted while this change waited): as a deleted one is.
        return ApiError("not_found", result.message or "No such object.", code="resource_missing")
    if result.outcome in (Outcome.RETRYABLE, Outcome.UNAVAILABLE):
        return ApiError(
            "provider_unavailable",
            result.message or f"The {provider} provider is unavailable; retry later.",
            code=REDRIVE_UNRESOLVED if result.unresolved else None,
            retry_after=result.retry_after or RETRY_AFTER_S,
        )
    if result.outcome is Outcome.DECLINED:
        return ApiError(
            "card_error",
            result.message or "The card was declined.",
            code="card_declined",
            decline_code=result.decline_code or "generic_decline",
        )
    if result.outcome is Outcome.REQUIRES_ACTION:
        return ApiError("card_error", "The payment method requires authentication.", code="authentication_required")
    return ApiError("provider_error", result.message or f"The {provider} provider answered with an error.")


def require_success(provider: str, result: ProviderResult) -> ProviderResult:
    if result.outcome is Outcome.APPROVED and not result.details.get("unsupported"):
        return result
    raise provider_error(provider, result)


def require_deleted(provider: str, result: ProviderResult) -> ProviderResult:
    """A deletion the provider refuses in the object's present state (`details["conflict"]`: a customer profile an
    Authorize.net subscription unknown here still bills) is the client's 409; any other failure as in
    `require_success`. Only deletions read `conflict` here: elsewhere in billing it stays a 502."""
    code = result.details.get("conflict")
    if result.outcome is Outcome.PERMANENT and isinstance(code, str):
        raise conflict(result.message or f"The {provider} provider refuses this deletion in its present state.", code)
    return require_success(provider, result)


def starts_incomplete(result: ProviderResult) -> bool:
    """A subscription whose first invoice was declined or needs authentication exists, `incomplete`. A decline
    before the provider made one (the card refused as it was attached) is the client's card error: no reference,
    nothing to record."""
    declined = result.outcome in (Outcome.DECLINED, Outcome.REQUIRES_ACTION)
    return declined and result.reference is not None and not result.details.get("invalid_param")
