"""Settings of the transactions worker (env names as in API.md)."""

from __future__ import annotations

from payments_shared.settings import CommonSettings, ProviderSettings, RecoverySettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class TransactionsSettings(CommonSettings, ProviderSettings, RecoverySettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # The gateway's RPC deadline (same variable): provider retries for a live command end before it.
    rpc_timeout_s: float = Field(default=10.0, gt=0, le=300)  # bounded: a shutdown waits for it (http.serve)
    # How many commands one worker handles at once.
    transactions_prefetch: int = Field(default=32, ge=1)
