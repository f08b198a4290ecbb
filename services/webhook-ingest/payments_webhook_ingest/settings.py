"""webhook-ingest's settings (environment names as in API.md)."""

from __future__ import annotations

from payments_shared.settings import CommonSettings, RateLimitSettings
from pydantic import Field, field_validator

# Stripe's own tolerance; we refuse timestamps this far in the past *and* in the future.
SIGNATURE_TOLERANCE_S = 300


class WebhookSettings(CommonSettings, RateLimitSettings):
    """`STRIPE_WEBHOOK_SECRET` may list several secrets separated by commas (rotation: any one verifies)."""

    port: int = Field(default=8001, ge=1, le=65535)
    stripe_webhook_secret: str | None = None
    authnet_signature_key: str | None = None
    webhook_tolerance_s: int = Field(default=SIGNATURE_TOLERANCE_S, ge=1)
    # How long a recorded event may stay unforwarded before the sweep sends it again, and how often it looks.
    webhook_forward_grace_s: float = Field(default=5.0, ge=0)
    webhook_sweep_interval_s: float = Field(default=5.0, gt=0)

    @field_validator("stripe_webhook_secret", "authnet_signature_key")
    @classmethod
    def _unset_when_empty(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @property
    def stripe_secrets(self) -> list[str]:
        if not self.stripe_webhook_secret:
            return []
        return [secret.strip() for secret in self.stripe_webhook_secret.split(",") if secret.strip()]
