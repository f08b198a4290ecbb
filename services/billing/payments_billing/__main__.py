"""`python -m payments_billing`: the billing worker in services mode, with only /healthz, /readyz and /breakers on
$PORT."""

from __future__ import annotations

from typing import Any

from payments_shared.process import bootstrap, run_or_exit, run_worker, settings_or_exit

from payments_billing.main import start_billing
from payments_billing.settings import BillingSettings


def main() -> None:
    settings = settings_or_exit(BillingSettings, services_mode=True)
    bootstrap("payments-billing", settings.log_level, (settings.stripe_api_key, settings.authnet_transaction_key))

    async def start(broker: Any, store: Any, providers: Any) -> Any:
        return await start_billing(broker, store, providers, settings)

    run_or_exit(run_worker("payments-billing", settings, start))


if __name__ == "__main__":
    main()
