"""Choose the broker adapter from `BROKER_URL` (memory:// or amqp(s)://)."""

from __future__ import annotations

from payments_shared.broker.memory import InMemoryBroker
from payments_shared.broker.port import Broker
from payments_shared.tracing import instrument_broker


async def open_broker(url: str, *, delivery_limit: int = 5) -> Broker:
    """A connected broker; `delivery_limit` is the number of deliveries before a message is dead-lettered.
    Trace context travels in the messages' `traceparent` header (payments_shared.tracing.instrument_broker)."""
    if url == "memory://":
        return instrument_broker(InMemoryBroker(delivery_limit=delivery_limit))
    if url.startswith(("amqp://", "amqps://")):
        from payments_shared.broker.rabbitmq import RabbitMQBroker  # aio-pika only where it is used

        return instrument_broker(await RabbitMQBroker.connect(url, delivery_limit=delivery_limit))
    raise ValueError(f"unsupported broker URL scheme: {url.split('://', 1)[0]}:// (memory:// or amqp(s)://)")
