"""A customer's subscriptions: `customer-subscriptions-{customer id}` holds one `CustomerSubscriptionAdded` per
subscription the provider made for the customer, so that deleting the customer cancels them first, as Stripe does.
An index stream, like the provider references: the store stays the only truth."""

from __future__ import annotations

from payments_shared.eventstore.port import NO_STREAM, WrongExpectedVersion

from payments_billing.events import DomainEvent
from payments_billing.streams import Origin, Streams

ADDED = "CustomerSubscriptionAdded"


def index_stream(customer_id: str) -> str:
    return f"customer-subscriptions-{customer_id}"


async def subscription_ids(streams: Streams, customer_id: str) -> list[str]:
    return [str(event.data["subscription_id"]) for event in await streams.read(index_stream(customer_id))]


async def add(streams: Streams, customer_id: str, subscription_id: str, origin: Origin) -> None:
    """List the subscription once: a redelivered creation finds it listed already."""
    stream = index_stream(customer_id)
    while True:
        events = await streams.read(stream)
        if any(event.data.get("subscription_id") == subscription_id for event in events):
            return
        version = events[-1].version if events else NO_STREAM
        try:
            await streams.append(stream, DomainEvent(ADDED, {"subscription_id": subscription_id}), version, origin)
            return
        except WrongExpectedVersion:
            continue  # another subscription of this customer was listed meanwhile: read again
