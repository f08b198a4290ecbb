"""A customer's subscriptions, listed on the customer's own stream (`CustomerSubscriptionAdded`) once the provider
has made each. The customer stream is where a subscription's creation and the customer's deletion meet: each
appends there at the version it read, so whichever comes second sees the other. A deletion that comes second
cancels the subscription first (as Stripe does); a creation that comes second finds the customer gone and undoes
the subscription it made."""

from __future__ import annotations

from payments_shared.errors import ApiError
from payments_shared.eventstore.port import WrongExpectedVersion

from payments_billing import customer as customers
from payments_billing.streams import Origin, Streams


async def add(streams: Streams, customer_id: str, workspace: str, subscription_id: str, origin: Origin) -> bool:
    """List the subscription on its customer (once: a redelivered creation finds it listed). False when the
    customer was deleted since the creation looked it up."""
    stream = customers.stream_name(customer_id)
    while True:
        loaded = await streams.load(stream, customers.fold)
        try:
            event = customers.decide_subscription_added(loaded.state, workspace, subscription_id)
        except ApiError:
            return False
        if event is None:
            return True
        try:
            await streams.append(stream, event, loaded.version, origin)
            return True
        except WrongExpectedVersion:
            continue  # the customer changed meanwhile (another subscription, an update, its deletion): decide again
