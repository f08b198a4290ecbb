"""A dead letter whose body is not a command (a poison message: not JSON, or JSON that is not an object) is listed
by `payments-ops dlq list` beside the others, named as such, and `dlq requeue` of it says so in one line: it
must not hide every other dead letter behind a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aio_pika
import pytest
from payments_shared.broker.rabbitmq import dead_letter_queue
from payments_shared.messages import TRANSACTIONS_QUEUE

pytestmark = pytest.mark.rabbitmq

PAYMENTS_OPS = str(Path(sys.executable).parent / "payments-ops")


def payments_ops(broker_url: str, data_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BROKER_URL": broker_url, "DATA_DIR": str(data_dir)}
    return subprocess.run([PAYMENTS_OPS, *arguments], env=env, capture_output=True, text=True, timeout=60)


async def dead_letter_raw(broker_url: str, body: bytes, message_id: str) -> None:
    """Put `body` in the transactions queue's dead letters as a worker's dead-lettering would leave it."""
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        message = aio_pika.Message(body, message_id=message_id, headers={"x-delivery-count": 5})
        await channel.default_exchange.publish(message, routing_key=dead_letter_queue(TRANSACTIONS_QUEUE))


def test_an_unreadable_dead_letter_is_listed_and_not_requeued(tmp_path: Path, isolated_rabbitmq_url: str) -> None:
    assert payments_ops(isolated_rabbitmq_url, tmp_path, "dlq", "list").returncode == 0  # declares the queues
    asyncio.run(dead_letter_raw(isolated_rabbitmq_url, b"not json at all", "poison-1"))
    asyncio.run(dead_letter_raw(isolated_rabbitmq_url, b"[1, 2, 3]", "poison-2"))

    listed = payments_ops(isolated_rabbitmq_url, tmp_path, "dlq", "list", "--json")
    requeued = payments_ops(isolated_rabbitmq_url, tmp_path, "dlq", "requeue", "poison-2")

    assert listed.returncode == 0, listed.stderr
    letters = {letter["message_id"]: letter for letter in json.loads(listed.stdout)}
    assert set(letters) == {"poison-1", "poison-2"}
    assert all("not a command" in str(letter["reason"]) for letter in letters.values())
    assert requeued.returncode == 1  # refused, as a dead letter that is not there is
    assert requeued.stderr.strip().splitlines() == [
        "payments-ops dlq: dead letter poison-2 is not a command (its body is not a JSON object)"
    ], requeued.stderr
    again = payments_ops(isolated_rabbitmq_url, tmp_path, "dlq", "list", "--json")
    assert {letter["message_id"] for letter in json.loads(again.stdout)} == {"poison-1", "poison-2"}  # kept
