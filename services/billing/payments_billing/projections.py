"""The customers and subscriptions list read models: each stream as the list shows it (the same JSON as a
`GET` of the object, from the same fold). Hosted by this worker; rebuilt by `payments-ops replay`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from payments_shared.eventstore.port import RecordedEvent
from payments_shared.projections.listing import ListSpec
from payments_shared.projections.model import ListEntry, Projection

from payments_billing import customer, subscription


def customer_entry(events: Sequence[RecordedEvent]) -> ListEntry | None:
    folded = customer.fold(events)
    if folded is None:
        return None
    return ListEntry(
        id=folded.id,
        workspace=folded.workspace,
        created_at=folded.created_at,
        body=folded.to_api(),
        email=folded.email,
        listed=not folded.deleted,
    )


def subscription_entry(events: Sequence[RecordedEvent]) -> ListEntry | None:
    folded = subscription.fold(events)
    if folded is None:
        return None
    return ListEntry(
        id=folded.id,
        workspace=folded.workspace,
        created_at=folded.created_at,
        body=folded.to_api(),
        status=folded.status,
        customer_id=folded.customer_id,
    )


CUSTOMERS: Final = Projection("customers", "customer-cus_", customer_entry)
SUBSCRIPTIONS: Final = Projection("subscriptions", "subscription-sub_", subscription_entry)
LISTS: Final = {
    "list_customers": ListSpec(projection="customers", url="/api/v1/payments/customers", filters=("email", "created")),
    "list_subscriptions": ListSpec(
        projection="subscriptions",
        url="/api/v1/payments/subscriptions",
        filters=("customer_id", "status", "created"),
        statuses=subscription.STATUSES,
        # As Stripe's: canceled ones only when asked for; `ended` (Stripe's canceled and incomplete_expired: an
        # incomplete subscription that expires is canceled here) and `all` too.
        status_groups={"ended": (subscription.CANCELED_STATUS,), "all": None},
        unfiltered=tuple(status for status in subscription.STATUSES if status != subscription.CANCELED_STATUS),
    ),
}
