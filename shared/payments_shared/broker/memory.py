"""In-memory broker for embedded mode, with RabbitMQ's semantics as far as one process can have them.

Per-queue FIFO, competing consumers, `prefetch` concurrent handler calls per consumer, ack once the handler
returned, redelivery (`redelivered=True`, `delivery_count+1`) when it raised, dead-lettering with the reason
after `delivery_limit` deliveries, request/reply with a timeout. Bodies go through a JSON round trip, as they
would on the wire, so a handler never shares mutable state with the sender.

`another_connection()` gives a second broker on the same queues, the way a second process would connect to
the same RabbitMQ: closing it returns its unacked messages to their queues (used to show a consumer dying).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from payments_shared import jsoncodec
from payments_shared.broker.port import BrokerUnavailable, DeadLetter, Handler, Message, RequestTimeout

logger = logging.getLogger(__name__)

ReplyFuture = asyncio.Future[Mapping[str, Any]]
CONSUMER_GONE_REASON = "delivery limit reached: the consumer went away without acking"


@dataclass
class _Envelope:
    message: Message  # as sent: redelivered/delivery_count are filled in per delivery
    delivery_count: int = 0  # deliveries so far
    reply_to: ReplyFuture | None = None

    def delivery(self) -> Message:
        count = self.delivery_count
        return dataclasses.replace(self.message, redelivered=count > 1, delivery_count=count)


def _wire_copy(message: Message) -> Message:
    """What the receiving side would decode: JSON body, string headers, default delivery fields."""
    body = jsoncodec.detached_copy(message.body)
    headers = {str(key): str(value) for key, value in message.headers.items()}
    return Message(body=body, message_id=message.message_id, correlation_id=message.correlation_id, headers=headers)


class _Queue:
    """FIFO with waiters served in arrival order (competing consumers take turns)."""

    def __init__(self) -> None:
        self._ready: deque[_Envelope] = deque()
        self._waiters: deque[asyncio.Future[_Envelope]] = deque()
        self.dead: list[DeadLetter] = []

    def put(self, envelope: _Envelope, *, front: bool = False) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(envelope)
                return
        if front:
            self._ready.appendleft(envelope)
        else:
            self._ready.append(envelope)

    async def get(self) -> _Envelope:
        if self._ready:
            return self._ready.popleft()
        waiter: asyncio.Future[_Envelope] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a message in the same tick we were cancelled: give it back rather than lose it.
            if waiter.done() and not waiter.cancelled():
                self.put(waiter.result(), front=True)
            raise


class _Hub:
    """The queues themselves: what several `InMemoryBroker` "connections" share."""

    def __init__(self, delivery_limit: int) -> None:
        self.delivery_limit = delivery_limit
        self.queues: dict[str, _Queue] = {}

    def queue(self, name: str) -> _Queue:
        if name not in self.queues:
            self.queues[name] = _Queue()
        return self.queues[name]

    def give_back(self, queue_name: str, envelope: _Envelope, reason: str) -> None:
        """An unacked delivery returns to the queue, or to the dead letters once it used its last delivery."""
        queue = self.queue(queue_name)
        if envelope.delivery_count >= self.delivery_limit:
            logger.warning("dead-lettering %s from %s: %s", envelope.message.message_id, queue_name, reason)
            dead = DeadLetter(queue=queue_name, message=envelope.delivery(), reason=reason)
            queue.dead.append(dead)
            return
        queue.put(envelope, front=True)


class _Consumer:
    def __init__(self, hub: _Hub, queue_name: str, handler: Handler, prefetch: int) -> None:
        self._hub = hub
        self._queue_name = queue_name
        self._handler = handler
        self._slots = asyncio.Semaphore(prefetch)
        self._unacked: dict[asyncio.Task[None], _Envelope] = {}
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"memory-consumer:{queue_name}")

    async def _dispatch(self) -> None:
        queue = self._hub.queue(self._queue_name)
        while True:
            await self._slots.acquire()
            try:
                envelope = await queue.get()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            envelope.delivery_count += 1
            task = asyncio.create_task(self._handle(envelope))
            self._unacked[task] = envelope

    async def _handle(self, envelope: _Envelope) -> None:
        task = asyncio.current_task()
        try:
            reply = await self._handler(envelope.delivery())
        except asyncio.CancelledError:
            raise  # close() returns what is still unacked
        except Exception as exc:
            last = envelope.delivery_count >= self._hub.delivery_limit  # dead-lettered now: its traceback, to find why
            logger.warning(
                "handler failed on %s (delivery %d)",
                self._queue_name,
                envelope.delivery_count,
                exc_info=exc if last else None,
            )
            self._settle(task)
            self._hub.give_back(self._queue_name, envelope, f"{type(exc).__name__}: {exc}")
        else:
            self._settle(task)
            if envelope.reply_to is not None and not envelope.reply_to.done():
                envelope.reply_to.set_result(jsoncodec.detached_copy(reply or {}))

    def _settle(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._unacked.pop(task, None)
        self._slots.release()

    async def cancel(self) -> None:
        tasks: list[asyncio.Task[None]] = [self._dispatcher, *self._unacked]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for envelope in self._unacked.values():
            self._hub.give_back(self._queue_name, envelope, CONSUMER_GONE_REASON)
        self._unacked.clear()


class InMemoryBroker:
    outlives_process = False

    def __init__(self, *, delivery_limit: int = 5, _hub: _Hub | None = None) -> None:
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        self._hub = _hub or _Hub(delivery_limit)
        self._consumers: list[_Consumer] = []
        self._waiting_requests: set[ReplyFuture] = set()
        self._closed = False

    def another_connection(self) -> InMemoryBroker:
        """A second broker on the same queues (as a second process connecting to the same server)."""
        return InMemoryBroker(delivery_limit=self._hub.delivery_limit, _hub=self._hub)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerUnavailable("in-memory broker is closed")

    async def send(self, queue: str, message: Message) -> None:
        self._check_open()
        self._hub.queue(queue).put(_Envelope(_wire_copy(message)))

    async def request(self, queue: str, message: Message, timeout: float) -> Mapping[str, Any]:
        self._check_open()
        reply: ReplyFuture = asyncio.get_running_loop().create_future()
        self._hub.queue(queue).put(_Envelope(_wire_copy(message), reply_to=reply))
        self._waiting_requests.add(reply)
        try:
            async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow a cancel that meets a reply
                return await reply
        except TimeoutError:
            raise RequestTimeout(f"no reply from {queue} within {timeout}s") from None
        finally:
            self._waiting_requests.discard(reply)

    async def consume(self, queue: str, handler: Handler, prefetch: int = 32) -> None:
        self._check_open()
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self._consumers.append(_Consumer(self._hub, queue, handler, prefetch))

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        self._check_open()
        return list(self._hub.queue(queue).dead)

    async def requeue_dead_letter(self, queue: str, message_id: str) -> bool:
        self._check_open()
        target = self._hub.queue(queue)
        for index, dead in enumerate(target.dead):
            if dead.message.message_id == message_id:
                del target.dead[index]
                target.put(_Envelope(_wire_copy(dead.message)))
                return True
        return False

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for reply in self._waiting_requests:
            if not reply.done():
                reply.set_exception(BrokerUnavailable("in-memory broker closed"))
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            with contextlib.suppress(Exception):
                await consumer.cancel()
