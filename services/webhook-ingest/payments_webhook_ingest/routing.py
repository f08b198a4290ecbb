"""Which worker owns an event: payments, charges, refunds and disputes go to transactions; customers,
subscriptions and invoices to billing. Any other event type is recorded and not forwarded."""

from __future__ import annotations

from payments_shared.messages import BILLING_QUEUE, TRANSACTIONS_QUEUE

_OWNERS: dict[str, tuple[tuple[str, str], ...]] = {
    "stripe": (
        ("payment_intent.", TRANSACTIONS_QUEUE),
        ("charge.", TRANSACTIONS_QUEUE),
        ("refund.", TRANSACTIONS_QUEUE),
        ("customer.", BILLING_QUEUE),  # customer.updated/deleted and customer.subscription.*
        ("invoice.", BILLING_QUEUE),
    ),
    "authnet": (
        ("net.authorize.payment.", TRANSACTIONS_QUEUE),
        ("net.authorize.customer.", BILLING_QUEUE),
    ),
}


def owning_queue(provider: str, event_type: str) -> str | None:
    for prefix, queue in _OWNERS.get(provider, ()):
        if event_type.startswith(prefix):
            return queue
    return None
