"""Settings of the transactions worker (env names as in API.md)."""

from __future__ import annotations

from payments_shared.settings import CommonSettings, ProviderSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class TransactionsSettings(CommonSettings, ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Outcome-less operations older than this are driven to an outcome by `recover()`.
    recovery_min_age_s: float = Field(default=30.0, ge=0)
    # How often the recovery sweep runs (0: only at start-up).
    recovery_interval_s: float = Field(default=5.0, ge=0)
    # The gateway's RPC deadline (same variable): provider retries for a live command end before it.
    rpc_timeout_s: float = Field(default=10.0, gt=0)
    # How many commands one worker handles at once.
    transactions_prefetch: int = Field(default=32, ge=1)
