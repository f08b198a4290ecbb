"""The broker port: durable queues, request/reply, consume with ack after the handler returns.

Every adapter (RabbitMQ via aio-pika, in-memory) implements `Broker` and passes tests/contract/test_broker.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from payments_shared.ids import random_uuid_str


@dataclass(frozen=True)
class Message:
    body: Mapping[str, Any]
    message_id: str = field(default_factory=random_uuid_str)
    correlation_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # traceparent and other string headers
    redelivered: bool = False  # set by the broker on consume: an earlier delivery was not acked
    delivery_count: int = 1  # set by the broker on consume: 1 on the first delivery


# A handler returns the reply body for a request (ignored for a plain send), or raises to have the message
# redelivered (until the delivery limit, then it is dead-lettered).
Handler = Callable[[Message], Awaitable[Mapping[str, Any] | None]]


class BrokerError(Exception):
    pass


class BrokerUnavailable(BrokerError):
    pass


class PublishUnconfirmed(BrokerUnavailable):
    """The message was handed to the broker but its confirm never came back: it may be queued, and carried out."""


class RequestTimeout(BrokerError):
    """No reply within the deadline; the request may still be carried out."""


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # the queue the message died on
    message: Message
    reason: str
    readable: bool = True  # False: its body is not a JSON object (a poison message); `message.body` is empty


class Broker(Protocol):
    # Whether a message sent outlives this process (a server's durable queue); the in-memory broker's die with it.
    outlives_process: bool

    async def send(self, queue: str, message: Message) -> None:
        """Returns once the broker holds the message durably (publisher confirm)."""
        ...

    async def request(self, queue: str, message: Message, timeout: float) -> Mapping[str, Any]:
        """Send and wait for the handler's reply; RequestTimeout past `timeout` seconds."""
        ...

    async def consume(self, queue: str, handler: Handler, prefetch: int = 32) -> None:
        """Start consuming in the background; returns once the consumer is registered."""
        ...

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Messages dead-lettered from `queue`, oldest first (non-destructive)."""
        ...

    async def requeue_dead_letter(self, queue: str, message_id: str) -> bool:
        """Move one dead letter back onto `queue`; False if it is not there."""
        ...

    async def ping(self) -> None:
        """Raise BrokerUnavailable if the broker cannot serve requests (used by /readyz)."""
        ...

    async def close(self) -> None: ...
