"""Settings of the transactions worker (env names as in API.md)."""

from __future__ import annotations

from payments_shared.settings import CommonSettings, ProviderSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class TransactionsSettings(CommonSettings, ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Outcome-less operations older than this are driven to an outcome by `recover()`.
    recovery_min_age_s: float = Field(default=30.0, ge=0)
    # How many commands one worker handles at once.
    transactions_prefetch: int = Field(default=32, ge=1)
