"""Services mode: the transactions worker as its own process, with only /healthz, /readyz and /breakers on
$PORT. `python -m payments_transactions`; stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

from typing import Any

from payments_shared.process import bootstrap, run_or_exit, run_worker, settings_or_exit

from payments_transactions.main import start_transactions
from payments_transactions.settings import TransactionsSettings


def main() -> None:
    settings = settings_or_exit(TransactionsSettings, services_mode=True)
    bootstrap("payments-transactions", settings.log_level, (settings.stripe_api_key, settings.authnet_transaction_key))

    async def start(broker: Any, store: Any, providers: Any) -> Any:
        return await start_transactions(broker, store, providers, settings)

    run_or_exit(run_worker("payments-transactions", settings, start))


if __name__ == "__main__":
    main()
