"""Embedded mode reads what each part it hosts reads (same environment names)."""

from __future__ import annotations

from dataclasses import dataclass

from payments_gateway.settings import GatewaySettings
from payments_shared.providers.sandbox import SandboxSettings
from payments_shared.settings import load
from payments_transactions.settings import TransactionsSettings
from payments_webhook_ingest.settings import WebhookSettings


@dataclass(frozen=True)
class EmbeddedSettings:
    gateway: GatewaySettings
    transactions: TransactionsSettings
    sandbox: SandboxSettings
    webhooks: WebhookSettings

    @classmethod
    def from_environment(cls) -> EmbeddedSettings:
        """Raises ConfigError (one line naming the variable and its accepted forms) on a wrong value."""
        return cls(
            gateway=load(GatewaySettings),
            transactions=load(TransactionsSettings),
            sandbox=load(SandboxSettings),
            webhooks=load(WebhookSettings),
        )
