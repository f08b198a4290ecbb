"""The billing providers by name: the sandbox's customers and subscriptions over its payment ledger, and every
configured payment provider that also implements the `BillingProvider` port (Stripe, Authorize.net)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payments_shared.providers.port import BillingProvider
from payments_shared.providers.sandbox import SandboxProvider
from payments_shared.providers.sandbox_billing import SandboxBilling

BILLING_METHODS = (
    "create_customer",
    "update_customer",
    "delete_customer",
    "create_subscription",
    "update_subscription",
    "cancel_subscription",
)


def is_billing_provider(provider: Any) -> bool:
    return all(callable(getattr(provider, method, None)) for method in BILLING_METHODS)


def billing_providers(providers: Mapping[str, Any]) -> dict[str, BillingProvider]:
    """From the registry's providers (`build_providers`): each one as a `BillingProvider`. The worker puts them
    behind its resilience layer, which also traces each call."""
    chosen: dict[str, BillingProvider] = {}
    for name, provider in providers.items():
        if isinstance(provider, SandboxProvider):
            chosen[name] = SandboxBilling(provider.ledger)
        elif is_billing_provider(provider):
            chosen[name] = provider
    return chosen
