"""The gateway's settings (environment names as in API.md)."""

from __future__ import annotations

from payments_shared.settings import (
    DEVELOPMENT_JWT_SECRET,
    CommonSettings,
    JwtSettings,
    ProviderName,
    check_rate_limit,
    check_rate_limit_storage,
)
from pydantic import Field, field_validator


class GatewaySettings(CommonSettings, JwtSettings):
    """The development secret is the default; start-up then logs a loud warning."""

    payments_jwt_secret: str = Field(default=DEVELOPMENT_JWT_SECRET, min_length=1)
    payments_default_provider: ProviderName = "sandbox"
    rate_limit_storage: str = "memory://"
    rate_limit_read: str = "600/minute"
    rate_limit_write: str = "120/minute"
    rate_limit_webhook: str = "1200/minute"
    rpc_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("payments_jwt_issuer", "payments_jwt_audience")
    @classmethod
    def _unset_when_empty(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("rate_limit_read", "rate_limit_write", "rate_limit_webhook")
    @classmethod
    def _limit(cls, value: str) -> str:
        return check_rate_limit(value)

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        return check_rate_limit_storage(value)
