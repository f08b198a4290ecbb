"""The gateway's settings (environment names as in API.md)."""

from __future__ import annotations

from payments_shared.settings import (
    CommonSettings,
    JwtSettings,
    ProviderName,
    RateLimitSettings,
)
from pydantic import Field, field_validator


class GatewaySettings(CommonSettings, JwtSettings, RateLimitSettings):
    """The development secret is the default; start-up then logs a loud warning."""

    payments_default_provider: ProviderName = "sandbox"
    rpc_timeout_s: float = Field(default=10.0, gt=0, le=300)  # bounded: a shutdown waits for it (http.serve)

    @field_validator("payments_jwt_issuer", "payments_jwt_audience")
    @classmethod
    def _unset_when_empty(cls, value: str | None) -> str | None:
        return value or None
