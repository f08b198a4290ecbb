"""RabbitMQ adapter (aio-pika): durable quorum queues, publisher confirms, direct reply-to, delivery limit + DLX.

Topology per queue `q`: a durable quorum queue `q` (`x-delivery-limit`, dead-lettering to `payments.dlx` with
routing key `q`) and a durable classic queue `q.dead` bound to `payments.dlx` with key `q`. Classic, because
browsing it (basic.get, then requeue on channel close) must keep the order and not count deliveries.

`delivery_limit` is the number of deliveries a message gets. A handler failing on the last one has the message
copied to `q.dead` with an `x-failure-reason` header and acked, so the reason survives; a consumer that dies
without acking is covered by RabbitMQ itself (`x-delivery-limit` = delivery_limit - 1 redeliveries), with the
reason taken from `x-first-death-reason`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    DeliveryMode,
)

from payments_shared import jsoncodec
from payments_shared.broker.port import (
    BrokerError,
    BrokerUnavailable,
    DeadLetter,
    Handler,
    Message,
    PublishUnconfirmed,
    RequestTimeout,
)

logger = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE = "payments.dlx"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
FAILURE_REASON_HEADER = "x-failure-reason"
DELIVERY_COUNT_HEADER = "x-delivery-count"
# Headers the broker or this adapter adds: not part of the message's own headers, dropped on requeue.
BROKER_HEADER_PREFIX = "x-"
# How often a request whose confirm was lost is published again while the connection does not serve.
REPUBLISH_INTERVAL_S = 0.2
# Failures of the connection or channel under a publish or declare: the broker cannot serve right now.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    RuntimeError,
)
SETUP_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *TRANSPORT_ERRORS)


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead"


def _encode(message: Message, *, reply_to: str | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        body=jsoncodec.dumps_bytes(dict(message.body)),
        message_id=message.message_id,
        correlation_id=message.correlation_id or None,
        headers={str(key): str(value) for key, value in message.headers.items()},
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        reply_to=reply_to,
    )


def _string(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _delivery_count(incoming: AbstractIncomingMessage) -> int:
    earlier = incoming.headers.get(DELIVERY_COUNT_HEADER)
    return int(earlier) + 1 if isinstance(earlier, int) else 1


def _decode(incoming: AbstractIncomingMessage) -> Message:
    headers: dict[str, str] = {}
    for key, value in incoming.headers.items():
        text = _string(value)
        if text is not None and not key.startswith(BROKER_HEADER_PREFIX):
            headers[key] = text
    count = _delivery_count(incoming)
    return Message(
        body=jsoncodec.loads(incoming.body),
        message_id=incoming.message_id or "",
        correlation_id=incoming.correlation_id or "",
        headers=headers,
        redelivered=bool(incoming.redelivered) or count > 1,
        delivery_count=count,
    )


def _decode_dead(incoming: AbstractIncomingMessage) -> tuple[Message, bool]:
    """A dead letter, and whether its body could be read: a poison message (not a JSON object) must not hide the
    others from an operator, so it comes with an empty body instead."""
    try:
        message = _decode(incoming)
    except ValueError:
        message = None
    if message is not None and isinstance(message.body, Mapping):
        return message, True
    count = _delivery_count(incoming)
    return Message(body={}, message_id=incoming.message_id or "", delivery_count=count), False


def _death_reason(incoming: AbstractIncomingMessage) -> str:
    stated = _string(incoming.headers.get(FAILURE_REASON_HEADER))
    if stated:
        return stated
    by_broker = _string(incoming.headers.get("x-first-death-reason")) or "unknown"
    return f"{by_broker}: dead-lettered by RabbitMQ (the consumer went away without acking)"


def _log_restored(connection: object) -> None:
    """The other half of aio-pika's "unexpected connection close" line: the connection is back."""
    logger.info("broker connection restored")


class RabbitMQBroker:
    """Use `await RabbitMQBroker.connect(url)` (or `open_broker`)."""

    outlives_process = True

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publish_channel: AbstractRobustChannel,
        rpc_channel: AbstractRobustChannel,
        *,
        delivery_limit: int,
        send_timeout: float,
    ) -> None:
        self._connection = connection
        self._publish_channel = publish_channel  # sends, replies, dead-letter copies
        self._rpc_channel = rpc_channel  # requests and their replies (direct reply-to needs one channel)
        self._delivery_limit = delivery_limit
        self._send_timeout = send_timeout
        self._declared: set[str] = set()
        self._declare_lock = asyncio.Lock()
        self._dlx: AbstractExchange | None = None
        # Waiting requesters by request message_id (a list: the same message may be requested twice at once).
        self._pending_replies: dict[str, list[asyncio.Future[Mapping[str, Any]]]] = {}
        self._consumer_channels: list[AbstractRobustChannel] = []
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        delivery_limit: int = 5,
        send_timeout: float = 5.0,
        reconnect_interval: float = 1.0,
    ) -> RabbitMQBroker:
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        try:
            connection = await aio_pika.connect_robust(url, reconnect_interval=reconnect_interval)
        except TRANSPORT_ERRORS as exc:
            raise BrokerUnavailable(f"cannot connect to RabbitMQ: {exc}") from exc
        except aiormq.exceptions.AMQPError as exc:  # it answered, but closed instead of opening (a vhost, say)
            vhost = unquote(urlsplit(url).path.removeprefix("/")) or "/"
            raise BrokerUnavailable(
                f"RabbitMQ refused to open a connection: is there a virtual host {vhost!r}, and may this user use it?"
            ) from exc
        try:
            publish_channel = await connection.channel(publisher_confirms=True)
            rpc_channel = await connection.channel(publisher_confirms=True)
            broker = cls(
                connection,
                publish_channel,
                rpc_channel,
                delivery_limit=delivery_limit,
                send_timeout=send_timeout,
            )
            reply_queue = await rpc_channel.declare_queue(DIRECT_REPLY_TO, passive=True)
            await reply_queue.consume(broker._on_reply, no_ack=True)
            connection.reconnect_callbacks.add(_log_restored)
        except BaseException as exc:
            with contextlib.suppress(*TRANSPORT_ERRORS):
                await connection.close()
            if isinstance(exc, TRANSPORT_ERRORS):
                raise BrokerUnavailable(f"cannot set up RabbitMQ channels: {exc!r}") from exc
            raise
        return broker

    # --- topology -------------------------------------------------------------------------------------------

    async def _declare(self, queue: str) -> None:
        if queue in self._declared:
            return
        async with self._declare_lock:
            if queue in self._declared:
                return
            channel = self._publish_channel
            self._dlx = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
            dead = await channel.declare_queue(dead_letter_queue(queue), durable=True)
            await dead.bind(self._dlx, routing_key=queue)
            await channel.declare_queue(queue, durable=True, arguments=self._queue_arguments())
            self._declared.add(queue)

    def _queue_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self._delivery_limit - 1,  # redeliveries after the first delivery
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        }

    # --- publishing -----------------------------------------------------------------------------------------

    def _check_connected(self) -> None:
        if self._closed:
            raise BrokerUnavailable("broker closed")
        if not self._connection_is_up():
            raise BrokerUnavailable("RabbitMQ connection is down (reconnecting)")

    def _connection_is_up(self) -> bool:
        connection = self._connection
        if connection.is_closed or not connection.connected.is_set():
            return False
        # `connected` is cleared by a close callback that runs a little later than the socket drop.
        transport = connection.transport
        return transport is not None and not transport.connection.is_closed

    async def _publish(
        self,
        channel: AbstractRobustChannel,
        amqp_message: aio_pika.Message,
        routing_key: str,
        *,
        exchange: AbstractExchange | None = None,
        declare: str | None = None,
        mandatory: bool = True,
        deadline: float | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm, within the send timeout (and `deadline`, a loop time).
        Raises PublishUnconfirmed once the message was handed over (it may be queued), BrokerUnavailable before."""
        self._check_connected()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._send_timeout
        handed_over = False
        try:
            async with asyncio.timeout_at(give_up_at if deadline is None else min(give_up_at, deadline)):
                if declare is not None:
                    await self._declare(declare)
                await channel.ready()
                target = exchange or channel.default_exchange
                handed_over = True
                confirm = await target.publish(amqp_message, routing_key, mandatory=mandatory)
        except TimeoutError:
            if handed_over:
                raise PublishUnconfirmed(f"no publisher confirm within {self._send_timeout}s") from None
            raise BrokerUnavailable(f"RabbitMQ did not take the message within {self._send_timeout}s") from None
        except aio_pika.exceptions.DeliveryError as exc:
            raise BrokerError(f"RabbitMQ refused the message: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            failure = PublishUnconfirmed if handed_over else BrokerUnavailable
            raise failure(f"RabbitMQ connection failed during publish: {exc!r}") from exc
        if mandatory and not isinstance(confirm, aiormq.spec.Basic.Ack):
            raise BrokerError(f"message to {routing_key!r} was returned unroutable")

    async def send(self, queue: str, message: Message) -> None:
        await self._publish(self._publish_channel, _encode(message), queue, declare=queue)

    async def request(self, queue: str, message: Message, timeout: float) -> Mapping[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reply: asyncio.Future[Mapping[str, Any]] = loop.create_future()
        waiting = self._pending_replies.setdefault(message.message_id, [])
        waiting.append(reply)
        try:
            await self._publish_request(_encode(message, reply_to=DIRECT_REPLY_TO), queue, deadline)
            async with asyncio.timeout_at(deadline):  # not wait_for: on 3.11 it can swallow a cancel that meets a reply
                return await reply
        except TimeoutError:
            raise RequestTimeout(f"no reply from {queue} within {timeout}s") from None
        finally:
            waiting.remove(reply)
            if not waiting:
                self._pending_replies.pop(message.message_id, None)

    async def _publish_request(self, amqp_message: aio_pika.Message, queue: str, deadline: float) -> None:
        """Publish a request. When its confirm was lost (it may be queued and carried out), publish it again as
        soon as the connection serves, until a copy is confirmed or the deadline passes (PublishUnconfirmed):
        answering "not sent" could have the client send it again. A second copy is the same message (same id,
        same command), which every handler already takes as the same request: RabbitMQ redelivers too."""
        publish = partial(self._publish, self._rpc_channel, amqp_message, queue, declare=queue, deadline=deadline)
        try:
            await publish()  # BrokerUnavailable: nothing of it reached the broker
            return
        except PublishUnconfirmed as error:
            lost = error
        loop = asyncio.get_running_loop()
        while loop.time() + REPUBLISH_INTERVAL_S < deadline:
            await asyncio.sleep(REPUBLISH_INTERVAL_S)
            with contextlib.suppress(BrokerUnavailable):
                await publish()
                return
        raise lost

    async def _on_reply(self, incoming: AbstractIncomingMessage) -> None:
        requesters = self._pending_replies.get(incoming.correlation_id or "", [])
        waiting = [future for future in requesters if not future.done()]
        if not waiting:
            return  # the requester gave up (timeout) or never was this process
        try:
            waiting[0].set_result(jsoncodec.loads(incoming.body))
        except ValueError as exc:
            waiting[0].set_exception(BrokerError(f"unreadable reply: {exc}"))

    # --- consuming ------------------------------------------------------------------------------------------

    async def consume(self, queue: str, handler: Handler, prefetch: int = 32) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self._check_connected()
        try:
            async with asyncio.timeout(self._send_timeout):
                await self._declare(queue)
                channel = await self._connection.channel(publisher_confirms=True)
                await channel.set_qos(prefetch_count=prefetch)
                amqp_queue = await channel.declare_queue(queue, durable=True, arguments=self._queue_arguments())
        except SETUP_ERRORS as exc:
            raise BrokerUnavailable(f"cannot start consuming {queue}: {exc!r}") from exc
        self._consumer_channels.append(channel)

        async def on_delivery(incoming: AbstractIncomingMessage) -> None:
            # Own task, so a dropped connection (which cancels aiormq's delivery tasks) does not cut a handler
            # short: it finishes, its ack fails, and RabbitMQ redelivers the message.
            task = asyncio.create_task(self._handle(queue, handler, incoming))
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_tasks.discard)

        await amqp_queue.consume(on_delivery)

    async def _handle(self, queue: str, handler: Handler, incoming: AbstractIncomingMessage) -> None:
        count = _delivery_count(incoming)
        try:
            reply = await handler(_decode(incoming))
            if incoming.reply_to:
                await self._send_reply(incoming, reply)
        except asyncio.CancelledError:
            raise  # closing: the unacked message goes back to the queue with the channel
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            last = count >= self._delivery_limit  # dead-lettered now: its traceback, to find out why
            logger.warning(
                "handler failed on %s (delivery %d): %s", queue, count, reason, exc_info=exc if last else None
            )
            await self._settle_failure(queue, incoming, count, reason)
            return
        await self._settle(incoming.ack())

    async def _send_reply(self, incoming: AbstractIncomingMessage, reply: Mapping[str, Any] | None) -> None:
        amqp_reply = aio_pika.Message(
            body=jsoncodec.dumps_bytes(dict(reply or {})),
            correlation_id=incoming.message_id,
            content_type="application/json",
        )
        # mandatory=False: RabbitMQ 3.10 reports a delivered direct reply-to message as returned otherwise.
        await self._publish(self._publish_channel, amqp_reply, incoming.reply_to or "", mandatory=False)

    async def _settle_failure(self, queue: str, incoming: AbstractIncomingMessage, count: int, reason: str) -> None:
        if count < self._delivery_limit:
            await self._settle(incoming.nack(requeue=True))  # RabbitMQ counts the delivery
            return
        logger.error("dead-lettering %s from %s after %d deliveries: %s", incoming.message_id, queue, count, reason)
        headers = dict(incoming.headers)
        headers[FAILURE_REASON_HEADER] = reason
        headers[DELIVERY_COUNT_HEADER] = count - 1
        dead = aio_pika.Message(
            body=incoming.body,
            message_id=incoming.message_id,
            correlation_id=incoming.correlation_id,
            headers=headers,
            content_type=incoming.content_type,
            delivery_mode=DeliveryMode.PERSISTENT,
        )
        try:
            await self._publish(self._publish_channel, dead, queue, exchange=self._dlx)
        except BrokerError:
            logger.exception("could not dead-letter %s; leaving it to redelivery", incoming.message_id)
            await self._settle(incoming.nack(requeue=True))
            return
        await self._settle(incoming.ack())

    @staticmethod
    async def _settle(outcome: Any) -> None:
        """Ack or nack; on a dropped channel the broker requeues the message by itself."""
        try:
            await outcome
        except TRANSPORT_ERRORS as exc:
            logger.warning("could not settle a delivery (channel gone, it will be redelivered): %r", exc)

    # --- dead letters ---------------------------------------------------------------------------------------

    async def _browse_dead(self, queue: str, requeue_id: str | None) -> tuple[list[DeadLetter], bool]:
        """Read every dead letter of `queue` without removing it: basic.get unacked, then close the channel so
        RabbitMQ puts them all back in their places. With `requeue_id`, that one is republished and acked."""
        self._check_connected()
        try:
            async with asyncio.timeout(self._send_timeout):
                await self._declare(queue)
                channel = await self._connection.channel(publisher_confirms=False)
        except SETUP_ERRORS as exc:
            raise BrokerUnavailable(f"cannot read dead letters of {queue}: {exc!r}") from exc
        found: list[DeadLetter] = []
        requeued = False
        try:
            dead_queue = await channel.get_queue(dead_letter_queue(queue), ensure=True)
            while (incoming := await dead_queue.get(no_ack=False, fail=False)) is not None:
                message, readable = _decode_dead(incoming)
                if requeue_id is not None and message.message_id == requeue_id and not readable:
                    raise BrokerError(f"dead letter {requeue_id} is not a command (its body is not a JSON object)")
                if requeue_id is not None and message.message_id == requeue_id and not requeued:
                    fresh = Message(message.body, message.message_id, message.correlation_id, message.headers)
                    await self.send(queue, fresh)
                    await incoming.ack()
                    requeued = True
                    continue
                if DELIVERY_COUNT_HEADER not in incoming.headers:  # dead-lettered by RabbitMQ: it used them all
                    count = self._delivery_limit
                    message = dataclasses.replace(message, redelivered=count > 1, delivery_count=count)
                found.append(DeadLetter(queue, message, _death_reason(incoming), readable))
        except TRANSPORT_ERRORS as exc:
            raise BrokerUnavailable(f"cannot read dead letters of {queue}: {exc!r}") from exc
        finally:
            with contextlib.suppress(*TRANSPORT_ERRORS):
                await channel.close()
        return found, requeued

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        found, _ = await self._browse_dead(queue, None)
        return found

    async def requeue_dead_letter(self, queue: str, message_id: str) -> bool:
        _, requeued = await self._browse_dead(queue, message_id)
        return requeued

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def ping(self) -> None:
        self._check_connected()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for waiting in self._pending_replies.values():
            for reply in waiting:
                if not reply.done():
                    reply.set_exception(BrokerUnavailable("broker closed"))
        if self._connection_is_up():  # stop deliveries; RabbitMQ requeues what they left unacked
            for channel in self._consumer_channels:
                with contextlib.suppress(*TRANSPORT_ERRORS):
                    await channel.close()
        tasks = list(self._handler_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await self._connection.close()  # RabbitMQ returns every unacked message to its queue
