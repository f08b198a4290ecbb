"""The billing worker's settings: the common ones (broker, event store, data dir), the providers' and its recovery
sweep's (RECOVERY_MIN_AGE_S, RECOVERY_INTERVAL_S, as the transactions worker's)."""

from __future__ import annotations

from payments_shared.settings import CommonSettings, ProviderSettings, RecoverySettings


class BillingSettings(CommonSettings, ProviderSettings, RecoverySettings):
    """Every variable is optional: the defaults run embedded mode against the sandbox."""
