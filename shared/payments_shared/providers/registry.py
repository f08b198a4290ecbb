"""The providers a worker can call, by name, built from settings (API.md: `sandbox`, `stripe`, `authnet`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from payments_shared.providers.authnet.provider import AuthorizeNetProvider
from payments_shared.providers.port import PaymentProvider
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
    # Stripe and Authorize.net adapters register here, each when its credentials are set, e.g.:
    #   if settings.stripe_api_key: providers["stripe"] = StripeProvider(settings)
    #   if settings.authnet_api_login_id and settings.authnet_transaction_key: providers["authnet"] = …
    if settings.stripe_api_key:  # STRIPE_API_KEY (and STRIPE_API_BASE for an emulator)
        providers["stripe"] = StripeProvider.from_settings(settings)
    authnet = AuthorizeNetProvider.from_settings(settings)  # when AUTHNET_API_LOGIN_ID and _TRANSACTION_KEY are set
    if authnet is not None:
        providers["authnet"] = authnet
    logger.info("providers configured", extra={"providers": sorted(providers)})
    return providers


async def close_providers(providers: Mapping[str, PaymentProvider]) -> None:
    for provider in providers.values():
        close = getattr(provider, "close", None)
        if close is not None:
            await close()
