"""The broker contract: every adapter (in-memory, RabbitMQ) passes this same suite.

RabbitMQ runs against the real local server (the `rabbitmq_url` fixture); each test uses its own queue, deleted
afterwards. Faults are real: a consumer "dies" by having its TCP connection cut (tests/support/tcp_proxy.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlparse, urlunparse

import aio_pika
import pytest
from payments_shared.broker.factory import open_broker
from payments_shared.broker.memory import InMemoryBroker
from payments_shared.broker.port import Broker, BrokerUnavailable, Message, PublishUnconfirmed, RequestTimeout
from payments_shared.broker.rabbitmq import RabbitMQBroker, dead_letter_queue

from tests.support.tcp_proxy import TcpProxy

DELIVERY_LIMIT = 3
WAIT_S = 15.0  # upper bound for something that should happen; never a measurement


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str) -> None:
    """Poll until `check` holds (a deadline against hangs, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        outcome = check()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class BrokerEnv:
    """Opens brokers of one kind on shared queues, and cleans up after the test."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.queue = f"test.broker.{uuid.uuid4().hex[:12]}"
        self._brokers: list[Broker] = []
        self._proxies: list[TcpProxy] = []
        self._memory: InMemoryBroker | None = None

    async def open(self, delivery_limit: int = DELIVERY_LIMIT) -> Broker:
        """Another connection to the same broker (in memory: another handle on the same queues)."""
        if self.kind == "memory":
            if self._memory is None:
                self._memory = InMemoryBroker(delivery_limit=delivery_limit)
                broker: Broker = self._memory
            else:
                broker = self._memory.another_connection()
        else:
            # The adapter itself, as in memory: open_broker's tracing wrapper rewrites `traceparent` as soon as any
            # module in this process has installed a tracer provider, which is not the adapter's contract.
            broker = await RabbitMQBroker.connect(self.url, delivery_limit=delivery_limit)
        self._brokers.append(broker)
        return broker

    async def open_killable(self, delivery_limit: int = DELIVERY_LIMIT) -> tuple[Broker, Callable[[], Awaitable[None]]]:
        """A broker and a way to make it die abruptly: its TCP connection is cut (RabbitMQ), or it goes away."""
        if self.kind == "memory":
            broker = await self.open(delivery_limit)
            return broker, broker.close
        broker, proxy = await self.open_through_proxy(delivery_limit)

        async def kill() -> None:
            await proxy.cut()
            await broker.close()

        return broker, kill

    async def open_through_proxy(
        self, delivery_limit: int = DELIVERY_LIMIT, send_timeout: float = 5.0
    ) -> tuple[Broker, TcpProxy]:
        target = urlparse(self.url)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
        await proxy.start()
        self._proxies.append(proxy)
        netloc = f"{target.username}:{target.password}@127.0.0.1:{proxy.port}"
        url = urlunparse(target._replace(netloc=netloc))
        broker = await RabbitMQBroker.connect(url, delivery_limit=delivery_limit, send_timeout=send_timeout)
        self._brokers.append(broker)
        return broker, proxy

    async def cleanup(self) -> None:
        for broker in reversed(self._brokers):
            await broker.close()
        for proxy in self._proxies:
            await proxy.close()
        if self.kind == "rabbitmq":
            connection = await aio_pika.connect(self.url)
            async with connection:
                channel = await connection.channel()
                for name in (self.queue, dead_letter_queue(self.queue)):
                    await channel.queue_delete(name, if_unused=False, if_empty=False)


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[BrokerEnv]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("rabbitmq_url")
    broker_env = BrokerEnv(request.param, url)
    try:
        yield broker_env
    finally:
        await broker_env.cleanup()


class Recorder:
    """A handler that records what it got; `fail_first` deliveries raise, `blocked` deliveries wait."""

    def __init__(self, fail_first: int = 0, reply: bool = False) -> None:
        self.received: list[Message] = []
        self.fail_first = fail_first
        self.reply = reply
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, message: Message) -> dict[str, Any] | None:
        self.received.append(message)
        await self.release.wait()
        if len(self.received) <= self.fail_first:
            raise ValueError(f"refusing delivery {len(self.received)}")
        return {"echo": dict(message.body)} if self.reply else None


async def test_the_broker_says_whether_a_sent_message_outlives_this_process(env: BrokerEnv) -> None:
    assert (await env.open()).outlives_process is (env.kind == "rabbitmq")


async def test_sent_messages_are_consumed_in_order(env: BrokerEnv) -> None:
    broker = await env.open()
    for number in range(5):
        await broker.send(env.queue, Message({"n": number, "nested": {"list": [1, "two", None]}}))
    recorder = Recorder()
    await broker.consume(env.queue, recorder, prefetch=1)
    await eventually(lambda: len(recorder.received) == 5, "five deliveries")
    assert [message.body["n"] for message in recorder.received] == [0, 1, 2, 3, 4]
    assert recorder.received[0].body["nested"] == {"list": [1, "two", None]}
    assert all(not message.redelivered and message.delivery_count == 1 for message in recorder.received)


async def test_headers_are_preserved(env: BrokerEnv) -> None:
    broker = await env.open()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    sent = Message(
        {"type": "charge"},
        message_id="msg-1",
        correlation_id="corr-1",
        headers={"traceparent": traceparent, "tenant": "ws_1"},
    )
    recorder = Recorder()
    await broker.consume(env.queue, recorder)
    await broker.send(env.queue, sent)
    await eventually(lambda: len(recorder.received) == 1, "the delivery")
    got = recorder.received[0]
    assert (got.message_id, got.correlation_id) == ("msg-1", "corr-1")
    assert got.headers == {"traceparent": traceparent, "tenant": "ws_1"}


async def test_competing_consumers_share_the_queue_and_each_runs_prefetch_handlers_at_once(env: BrokerEnv) -> None:
    broker = await env.open()
    first, second = Recorder(), Recorder()
    first.release.clear()
    second.release.clear()
    await broker.consume(env.queue, first, prefetch=2)
    await broker.consume(env.queue, second, prefetch=2)
    for number in range(4):
        await broker.send(env.queue, Message({"n": number}))
    # Four messages, two consumers with prefetch 2: all four handlers are running at once.
    await eventually(lambda: len(first.received) == 2 and len(second.received) == 2, "two handlers per consumer")
    first.release.set()
    second.release.set()
    numbers = sorted(message.body["n"] for message in [*first.received, *second.received])
    assert numbers == [0, 1, 2, 3]


async def test_request_gets_the_handlers_reply(env: BrokerEnv) -> None:
    server, client = await env.open(), await env.open()
    await server.consume(env.queue, Recorder(reply=True))
    replies = await asyncio.gather(
        *(client.request(env.queue, Message({"n": number}), timeout=WAIT_S) for number in range(10))
    )
    # Each requester gets the reply to its own request, nobody else's.
    assert [reply["echo"]["n"] for reply in replies] == list(range(10))


async def test_two_requests_for_the_same_message_both_get_a_reply(env: BrokerEnv) -> None:
    server, client = await env.open(), await env.open()
    await server.consume(env.queue, Recorder(reply=True))
    message = Message({"same": "command"}, message_id="m-twice")
    replies = await asyncio.gather(*(client.request(env.queue, message, timeout=WAIT_S) for _ in range(2)))
    assert replies == [{"echo": {"same": "command"}}] * 2


async def test_request_without_a_reply_times_out(env: BrokerEnv) -> None:
    broker = await env.open()
    with pytest.raises(RequestTimeout):
        await broker.request(env.queue, Message({"unanswered": True}), timeout=0.3)


async def test_a_handler_that_raises_gets_the_message_again(env: BrokerEnv) -> None:
    broker = await env.open()
    recorder = Recorder(fail_first=1, reply=True)
    await broker.consume(env.queue, recorder)
    reply = await broker.request(env.queue, Message({"try": "again"}, message_id="m-retry"), timeout=WAIT_S)
    assert reply == {"echo": {"try": "again"}}
    deliveries = [(m.message_id, m.redelivered, m.delivery_count) for m in recorder.received]
    assert deliveries == [("m-retry", False, 1), ("m-retry", True, 2)]


async def test_a_consumer_that_dies_before_acking_leaves_the_message_to_another(env: BrokerEnv) -> None:
    doomed, kill = await env.open_killable()
    stuck = Recorder()
    stuck.release.clear()  # never acks
    await doomed.consume(env.queue, stuck)
    survivor_broker = await env.open()
    await survivor_broker.send(env.queue, Message({"work": 1}, message_id="m-orphan"))
    await eventually(lambda: len(stuck.received) == 1, "the doomed consumer to take the message")

    await kill()
    survivor = Recorder()
    await survivor_broker.consume(env.queue, survivor)
    await eventually(lambda: len(survivor.received) == 1, "redelivery to the surviving consumer")
    got = survivor.received[0]
    assert (got.message_id, got.redelivered, got.delivery_count) == ("m-orphan", True, 2)


async def test_a_consumer_that_dies_on_the_last_delivery_dead_letters_the_message(env: BrokerEnv) -> None:
    doomed, kill = await env.open_killable(delivery_limit=1)
    stuck = Recorder()
    stuck.release.clear()
    await doomed.consume(env.queue, stuck)
    observer = await env.open(delivery_limit=1)
    await observer.send(env.queue, Message({"work": 1}, message_id="m-last"))
    await eventually(lambda: len(stuck.received) == 1, "the only delivery")

    await kill()

    async def dead_lettered() -> bool:
        return len(await observer.dead_letters(env.queue)) == 1

    await eventually(dead_lettered, "the dead letter")
    [dead] = await observer.dead_letters(env.queue)
    assert (dead.queue, dead.message.message_id) == (env.queue, "m-last")
    assert "delivery" in dead.reason and "limit" in dead.reason


async def test_past_the_delivery_limit_the_message_is_dead_lettered_with_its_reason_and_can_be_requeued(
    env: BrokerEnv,
) -> None:
    broker = await env.open()
    recorder = Recorder(fail_first=DELIVERY_LIMIT)
    await broker.consume(env.queue, recorder)
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    await broker.send(env.queue, Message({"poison": True}, message_id="m-poison", correlation_id="c", headers=headers))

    async def dead_lettered() -> bool:
        return len(await broker.dead_letters(env.queue)) == 1

    await eventually(dead_lettered, "the dead letter")
    assert [m.delivery_count for m in recorder.received] == list(range(1, DELIVERY_LIMIT + 1))
    [dead] = await broker.dead_letters(env.queue)
    assert dead.queue == env.queue
    assert dead.reason == f"ValueError: refusing delivery {DELIVERY_LIMIT}"
    assert (dead.message.message_id, dead.message.correlation_id) == ("m-poison", "c")
    assert dead.message.body == {"poison": True}
    assert dead.message.headers == headers
    assert dead.message.delivery_count == DELIVERY_LIMIT
    assert len(await broker.dead_letters(env.queue)) == 1  # browsing does not consume

    assert await broker.requeue_dead_letter(env.queue, "no-such-message") is False
    assert await broker.requeue_dead_letter(env.queue, "m-poison") is True
    await eventually(lambda: len(recorder.received) == DELIVERY_LIMIT + 1, "the requeued delivery")
    requeued = recorder.received[-1]
    assert (requeued.message_id, requeued.delivery_count, requeued.headers) == ("m-poison", 1, headers)
    assert await broker.dead_letters(env.queue) == []


async def test_the_failure_that_dead_letters_a_message_is_logged_with_its_traceback(
    env: BrokerEnv, caplog: pytest.LogCaptureFixture
) -> None:
    # Only "handler failed" with the reason was logged: a probe's dead-lettered webhook (a TypeError deep in the
    # worker) could not be traced to its line. Earlier deliveries stay one line (a store outage retries them all).
    broker = await env.open()
    await broker.consume(env.queue, Recorder(fail_first=DELIVERY_LIMIT))
    with caplog.at_level(logging.WARNING, logger="payments_shared.broker"):
        await broker.send(env.queue, Message({"poison": True}, message_id="m-traced"))

        async def dead_lettered() -> bool:
            return len(await broker.dead_letters(env.queue)) == 1

        await eventually(dead_lettered, "the dead letter")
    failures = [record for record in caplog.records if record.getMessage().startswith("handler failed")]
    assert len(failures) == DELIVERY_LIMIT
    assert [record.exc_info is not None for record in failures] == [False] * (DELIVERY_LIMIT - 1) + [True]
    assert "refusing delivery" in str(failures[-1].exc_info[1])  # type: ignore[index]


async def test_after_the_connection_drops_the_broker_reconnects_and_messages_flow_again(env: BrokerEnv) -> None:
    if env.kind == "memory":
        pytest.skip("the in-memory broker has no connection to drop")
    broker, proxy = await env.open_through_proxy()
    recorder = Recorder(reply=True)
    await broker.consume(env.queue, recorder)
    await broker.send(env.queue, Message({"n": 1}))
    await eventually(lambda: len(recorder.received) == 1, "delivery before the outage")

    await proxy.cut()
    with pytest.raises(BrokerUnavailable):
        await broker.send(env.queue, Message({"n": "lost"}))
    with pytest.raises(BrokerUnavailable):
        await broker.ping()

    await proxy.restore()

    async def accepts_sends() -> bool:
        try:
            await broker.send(env.queue, Message({"n": 2}))
        except BrokerUnavailable:
            return False
        return True

    await eventually(accepts_sends, "a send after reconnection")
    await broker.ping()
    await eventually(lambda: [m.body["n"] for m in recorder.received] == [1, 2], "delivery after reconnection")
    reply = await broker.request(env.queue, Message({"n": 3}), timeout=WAIT_S)
    assert reply == {"echo": {"n": 3}}


async def open_requester_and_replier(env: BrokerEnv) -> tuple[Broker, TcpProxy, Recorder]:
    """A requester through a proxy (send timeout 0.5 s) and a replying handler, the queue declared by a first
    request; RabbitMQ only (the in-memory broker has no connection to lose)."""
    if env.kind == "memory":
        pytest.skip("the in-memory broker has no connection whose answers can be lost")
    requester, proxy = await env.open_through_proxy(send_timeout=0.5)
    recorder = Recorder(reply=True)
    await (await env.open()).consume(env.queue, recorder)
    assert await requester.request(env.queue, Message({"n": 0}), timeout=WAIT_S) == {"echo": {"n": 0}}
    return requester, proxy, recorder


def copies(recorder: Recorder, message_id: str) -> int:
    return [message.message_id for message in recorder.received].count(message_id)


async def test_a_request_whose_confirm_is_lost_is_sent_again_and_answered(env: BrokerEnv) -> None:
    """A request that reached RabbitMQ but whose confirm never came back may be carried out, so the requester
    must not give it up as unsent (a client would send it again). It publishes the same message again until a
    copy is confirmed, and the reply to a copy answers it."""
    requester, proxy, recorder = await open_requester_and_replier(env)
    proxy.mute()  # RabbitMQ's answers (the confirm, the reply) no longer reach the requester
    asking = asyncio.create_task(requester.request(env.queue, Message({"n": 1}, message_id="m-1"), timeout=WAIT_S))
    await eventually(lambda: copies(recorder, "m-1") >= 2, "the request published again")
    await proxy.cut()  # the connection drops; the requester reconnects and publishes it again
    proxy.unmute()
    await proxy.restore()
    assert await asyncio.wait_for(asking, WAIT_S) == {"echo": {"n": 1}}
    assert {message.body["n"] for message in recorder.received if message.message_id == "m-1"} == {1}


async def test_a_request_never_confirmed_by_its_deadline_says_it_may_have_been_taken(env: BrokerEnv) -> None:
    requester, proxy, recorder = await open_requester_and_replier(env)
    proxy.mute()
    with pytest.raises(PublishUnconfirmed):
        await requester.request(env.queue, Message({"n": 1}, message_id="m-1"), timeout=1.5)
    assert copies(recorder, "m-1") >= 1  # it was taken: it reached the handler


async def test_a_request_that_could_not_be_handed_over_is_unavailable_at_once(env: BrokerEnv) -> None:
    requester, proxy, recorder = await open_requester_and_replier(env)
    await proxy.cut()

    async def seen_down() -> bool:  # a publish racing the drop may have left: that one is PublishUnconfirmed
        try:
            await requester.ping()
        except BrokerUnavailable:
            return True
        return False

    await eventually(seen_down, "the requester to see its connection drop")
    with pytest.raises(BrokerUnavailable) as refused:
        await requester.request(env.queue, Message({"n": 1}, message_id="m-1"), timeout=WAIT_S)
    assert not isinstance(refused.value, PublishUnconfirmed)  # nothing of it reached RabbitMQ: safe to send again
    assert copies(recorder, "m-1") == 0


async def test_a_closed_broker_refuses_work(env: BrokerEnv) -> None:
    broker = await env.open()
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await broker.send(env.queue, Message({}))
    with pytest.raises(BrokerUnavailable):
        await broker.ping()


async def test_opening_an_unreachable_broker_fails_with_broker_unavailable(env: BrokerEnv) -> None:
    if env.kind == "memory":
        pytest.skip("the in-memory broker is always reachable")
    target = urlparse(env.url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        await proxy.cut()
        with pytest.raises(BrokerUnavailable):
            await open_broker(f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
