"""`payments-ops dlq list` and `payments-ops dlq requeue ID`: the commands RabbitMQ dead-lettered (a worker failed
on them, or died holding them, as many times as the delivery limit allows), with the reason, from BROKER_URL.

A requeued command is delivered again as it was: its command id is unchanged, so whatever it already did (a
`…Requested`, a provider call with its idempotency key) is taken over, never repeated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from payments_shared.broker.factory import open_broker
from payments_shared.broker.port import Broker, DeadLetter
from payments_shared.messages import BILLING_QUEUE, TRANSACTIONS_QUEUE
from payments_shared.settings import CommonSettings, ConfigError, load

QUEUES = (TRANSACTIONS_QUEUE, BILLING_QUEUE)
# Payload fields that identify the object a command is about; nothing else of the payload is shown (it may hold a
# payment-method token).
OBJECT_FIELDS = ("transaction_id", "customer_id", "subscription_id")


def register(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="dead-lettered commands (RabbitMQ)")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = actions.add_parser("list", help="every dead-lettered command with its reason")
    listing.add_argument("--queue", choices=QUEUES, help="only this queue (default: every worker queue)")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of lines")
    listing.set_defaults(run=list_dead_letters)
    requeue = actions.add_parser("requeue", help="put one dead-lettered command back on its queue")
    requeue.add_argument("message_id", metavar="ID", help="the message id `dlq list` shows")
    requeue.add_argument("--queue", choices=QUEUES, help="only look in this queue")
    requeue.set_defaults(run=requeue_dead_letter)


def describe(dead: DeadLetter) -> dict[str, Any]:
    """What an operator needs to act on a dead letter, without the command's payment data."""
    body: Mapping[str, Any] = dead.message.body
    raw_payload = body.get("payload")
    payload: Mapping[str, Any] = raw_payload if isinstance(raw_payload, Mapping) else {}
    described: dict[str, Any] = {
        "message_id": dead.message.message_id,
        "queue": dead.queue,
        "type": body.get("type"),
        "workspace": body.get("workspace"),
        "command_id": body.get("command_id"),
        "issued_at": body.get("issued_at"),
        "deliveries": dead.message.delivery_count,
        "reason": dead.reason if dead.readable else f"{dead.reason}; its body is not a command (not a JSON object)",
    }
    for name in OBJECT_FIELDS:
        if payload.get(name):
            described[name] = payload[name]
    return described


def _line(described: Mapping[str, Any]) -> str:
    target = next((f"{name}={described[name]}" for name in OBJECT_FIELDS if name in described), "-")
    return (
        f"{described['message_id']}  {described['queue']}  {described['type']}  {target}  "
        f"workspace={described['workspace']}  deliveries={described['deliveries']}  reason={described['reason']}"
    )


async def _connect() -> Broker:
    settings = load(CommonSettings)
    if not settings.broker_url.startswith(("amqp://", "amqps://")):
        raise ConfigError(
            "configuration error: BROKER_URL must be amqp://… (dead letters live in RabbitMQ; "
            "an embedded process keeps none once it stops)"
        )
    # aiormq logs a failed connection at ERROR itself: the BrokerError that follows is the one line said.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        return await open_broker(settings.broker_url)
    except ValueError as error:  # a URL that does not parse; the message holds no part of it (no password)
        raise ConfigError(f"configuration error: BROKER_URL is not a valid amqp:// URL ({error})") from None


async def _list(queues: Sequence[str]) -> list[dict[str, Any]]:
    broker = await _connect()
    try:
        found: list[dict[str, Any]] = []
        for queue in queues:
            found.extend(describe(dead) for dead in await broker.dead_letters(queue))
        return found
    finally:
        await broker.close()


async def _requeue(queues: Sequence[str], message_id: str) -> str | None:
    broker = await _connect()
    try:
        for queue in queues:
            if await broker.requeue_dead_letter(queue, message_id):
                return queue
        return None
    finally:
        await broker.close()


def _queues(arguments: argparse.Namespace) -> list[str]:
    return [arguments.queue] if arguments.queue else list(QUEUES)


def list_dead_letters(arguments: argparse.Namespace) -> int:
    try:
        found = asyncio.run(_list(_queues(arguments)))
    except ConfigError as error:  # a broker out of reach (BrokerError) is the CLI's one line, status 1
        print(str(error), file=sys.stderr)
        return 2
    if arguments.json:
        print(json.dumps(found, indent=2))
    elif not found:
        print("no dead letters")
    for described in [] if arguments.json else found:
        print(_line(described))
    return 0


def requeue_dead_letter(arguments: argparse.Namespace) -> int:
    try:
        queue = asyncio.run(_requeue(_queues(arguments), arguments.message_id))
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
    if queue is None:
        print(f"no dead letter {arguments.message_id}", file=sys.stderr)
        return 1
    print(f"requeued {arguments.message_id} onto {queue}")
    return 0
