"""Composition of the transactions worker (the one place it is wired): used by `__main__` (services mode) and
by payments_embedded (one process)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from payments_shared.broker.expiry import shedding_expired
from payments_shared.broker.port import Broker
from payments_shared.broker.store_failures import pausing_on_store_failure
from payments_shared.eventstore.port import EventStore
from payments_shared.messages import TRANSACTIONS_QUEUE
from payments_shared.metrics import observe_breakers
from payments_shared.projections.host import host_lists
from payments_shared.providers.port import PaymentProvider

from payments_transactions import projection
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker

logger = logging.getLogger(__name__)


async def start_transactions(
    broker: Broker,
    store: EventStore,
    providers: Mapping[str, PaymentProvider],
    settings: TransactionsSettings,
    *,
    recover_min_age_s: float | None = None,
) -> TransactionsWorker:
    """Finish what a previous run left open, then consume the queue and sweep every RECOVERY_INTERVAL_S (stop
    with `worker.stop()`). Embedded mode passes `recover_min_age_s=0` (no other worker can be running); services
    mode keeps the setting's age."""
    worker = TransactionsWorker(store, providers, settings)
    observe_breakers("transactions", worker.breakers)
    recovered = await worker.recover(recover_min_age_s)
    # The transactions list: projected here, answered on this queue (payments_shared.projections.host).
    lists = await host_lists(store, settings.data_dir, [projection.TRANSACTIONS], projection.LISTS)
    # Reads whose client has given up are answered unrun (payments_shared.broker.expiry); a store failure is
    # redelivered after a pause (payments_shared.broker.store_failures).
    handler = shedding_expired(pausing_on_store_failure(lists.serving(worker.handle)))
    await broker.consume(TRANSACTIONS_QUEUE, handler, prefetch=settings.transactions_prefetch)
    worker.start_sweeping()
    logger.info("transactions worker consuming", extra={"queue": TRANSACTIONS_QUEUE, "recovered": recovered})
    return worker
