"""The providers a worker can call, by name, built from settings (API.md: `sandbox`, `stripe`, `authnet`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from payments_shared.providers.authnet.provider import AuthorizeNetProvider
from payments_shared.providers.port import PaymentProvider
from payments_shared.providers.resilience import BreakerPolicy, ResilientProvider, RetryPolicy
from payments_shared.providers.sandbox import SandboxProvider, SandboxSettings
from payments_shared.providers.stripe import StripeProvider
from payments_shared.settings import ProviderSettings

logger = logging.getLogger(__name__)


def build_providers(
    settings: ProviderSettings, data_dir: Path, sandbox: SandboxSettings | None = None
) -> dict[str, PaymentProvider]:
    """The sandbox always; every other provider only when its credentials are configured."""
    sandbox_settings = sandbox or SandboxSettings()
    providers: dict[str, PaymentProvider] = {
        "sandbox": SandboxProvider(sandbox_settings.db_path or data_dir / "sandbox.db", sandbox_settings),
    }
    if not settings.missing_credentials("stripe"):  # STRIPE_API_BASE may point it at an emulator
        providers["stripe"] = StripeProvider.from_settings(settings)
    authnet = AuthorizeNetProvider.from_settings(settings)  # None while missing_credentials("authnet")
    if authnet is not None:
        providers["authnet"] = authnet
    logger.info("providers configured", extra={"providers": sorted(providers)})
    return providers


def with_resilience(providers: Mapping[str, Any], settings: ProviderSettings) -> dict[str, ResilientProvider]:
    """Each provider behind its own circuit breaker and retry policy (PROVIDER_RETRY_*, BREAKER_*). Every worker
    wraps the registry's providers once, so it has one breaker per provider."""
    retry = RetryPolicy(
        attempts=settings.provider_retry_attempts,
        base_s=settings.provider_retry_base_s,
        cap_s=settings.provider_retry_cap_s,
        attempt_timeout_s=settings.provider_timeout_s,
    )
    breaker = BreakerPolicy(fail_max=settings.breaker_fail_max, reset_timeout_s=settings.breaker_reset_timeout_s)
    return {
        name: provider if isinstance(provider, ResilientProvider) else ResilientProvider(provider, retry, breaker)
        for name, provider in providers.items()
    }


def breaker_states(providers: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What each wrapped provider's breaker says (for /readyz detail and logs)."""
    return {
        name: provider.breaker.snapshot()
        for name, provider in providers.items()
        if isinstance(provider, ResilientProvider)
    }


async def close_providers(providers: Mapping[str, PaymentProvider]) -> None:
    for provider in providers.values():
        close = getattr(provider, "close", None)
        if close is not None:
            await close()
