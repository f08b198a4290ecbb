"""What a provider's answer means for a billing command (pure): carry on, or which API.md error."""

from __future__ import annotations

import pytest
from payments_billing.outcomes import provider_error, require_success, starts_incomplete
from payments_shared.errors import ApiError
from payments_shared.providers.port import Outcome, ProviderResult


@pytest.mark.parametrize(
    ("result", "status", "code"),
    [
        (ProviderResult(Outcome.PERMANENT, details={"unsupported": True}), 400, "provider_unsupported"),
        (ProviderResult(Outcome.PERMANENT, details={"invalid_param": "price"}), 400, "parameter_invalid"),
        (
            ProviderResult(Outcome.PERMANENT, details={"invalid_param": "amount", "stripe_code": "amount_too_small"}),
            400,
            "amount_too_small",
        ),
        (ProviderResult(Outcome.PERMANENT, message="boom"), 502, "provider_error"),
        (ProviderResult(Outcome.PERMANENT, details={"stripe_code": "resource_missing"}), 404, "resource_missing"),
        (ProviderResult(Outcome.RETRYABLE), 503, "provider_unavailable"),
        (ProviderResult(Outcome.UNAVAILABLE, retry_after=7), 503, "provider_unavailable"),
        (ProviderResult(Outcome.DECLINED, decline_code="expired_card"), 402, "card_declined"),
        (ProviderResult(Outcome.REQUIRES_ACTION), 402, "authentication_required"),
    ],
)
def test_errors(result: ProviderResult, status: int, code: str) -> None:
    error = provider_error("stripe", result)
    assert (error.status, error.code) == (status, code)
    with pytest.raises(ApiError):
        require_success("stripe", result)


def test_details_of_the_errors() -> None:
    assert provider_error("x", ProviderResult(Outcome.PERMANENT, details={"invalid_param": "price"})).param == "price"
    assert provider_error("x", ProviderResult(Outcome.UNAVAILABLE, retry_after=7)).headers() == {"Retry-After": "7"}
    declined = provider_error("x", ProviderResult(Outcome.DECLINED, decline_code="expired_card"))
    assert declined.decline_code == "expired_card"


def test_success_and_incomplete_starts() -> None:
    approved = ProviderResult(Outcome.APPROVED, "sub_1")
    assert require_success("x", approved) is approved
    with pytest.raises(ApiError):
        require_success("x", ProviderResult(Outcome.APPROVED, details={"unsupported": True}))
    assert starts_incomplete(ProviderResult(Outcome.DECLINED, "sub_1"))
    assert starts_incomplete(ProviderResult(Outcome.REQUIRES_ACTION, "sub_1"))
    assert not starts_incomplete(ProviderResult(Outcome.DECLINED, details={"invalid_param": "payment_method"}))
    assert not starts_incomplete(approved)
