"""A transactions worker driven as the broker would deliver to it, for the Stripe re-drive tests: an untagged order
(its client's 50 metadata keys leave no room for our tag), charged and read through `worker.handle`."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Final

from payments_shared import ids
from payments_shared.broker.port import Message
from payments_shared.messages import Command
from payments_transactions.worker import TransactionsWorker

WORKSPACE: Final = "ws_a"
TIMEOUT_S: Final = 1.0  # a Stripe operation's budget: a loaded machine answers within it; 0.5 s was once too little
A_DAY_AND_MORE: Final = timedelta(hours=25)
FULL_METADATA: Final = {f"field{number}": f"value{number}" for number in range(50)}  # no room for the tag
ORDER: Final = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "metadata": FULL_METADATA}


async def charge(worker: TransactionsWorker, key: str) -> dict[str, Any]:
    """The untagged ORDER charged at Stripe under Idempotency-Key `key`: the worker's reply."""
    command_id = ids.command_id(WORKSPACE, key)
    body = {**ORDER, "provider": "stripe"}
    command = Command(
        type="charge",
        workspace=WORKSPACE,
        actor="user_1",
        command_id=command_id,
        payload={**body, "transaction_id": ids.derived_id("txn", command_id)},
        idempotency_key=key,
        fingerprint=ids.fingerprint("POST /api/v1/payments/charge", body),
    )
    message = Message(body=command.model_dump(), message_id=str(uuid.uuid4()), correlation_id="req-1")
    reply: dict[str, Any] = dict(await worker.handle(message))
    return reply


async def transaction(worker: TransactionsWorker, transaction_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await read(worker, "get_transaction", transaction_id)
    return body


async def events_of(worker: TransactionsWorker, transaction_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (await read(worker, "get_transaction_events", transaction_id))["data"]
    return events


async def read(
    worker: TransactionsWorker, query: str, transaction_id: str, workspace: str = WORKSPACE
) -> dict[str, Any]:
    """A transaction query (`get_transaction`, `get_transaction_events`) answered 200: its body."""
    command = Command(
        type=query,
        workspace=workspace,
        actor="user_1",
        command_id=str(uuid.uuid4()),
        payload={"transaction_id": transaction_id},
    )
    reply = await worker.handle(Message(body=command.model_dump(), message_id=str(uuid.uuid4())))
    assert reply["status"] == 200, reply
    body: dict[str, Any] = reply["body"]
    return body
