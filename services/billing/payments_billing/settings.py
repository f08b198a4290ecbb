"""The billing worker's settings: the common ones (broker, event store, data dir) and the providers'."""

from __future__ import annotations

from payments_shared.settings import CommonSettings, ProviderSettings


class BillingSettings(CommonSettings, ProviderSettings):
    """Every variable is optional: the defaults run embedded mode against the sandbox."""
