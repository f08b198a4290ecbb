"""Three transactions workers consuming one queue, as a scaled Deployment runs them, sharing one SQLite event
store and the sandbox's ledger. Commands on the same transaction, handled by different processes at once, still
move money at most once and never past what the transaction allows: the event store's expected versions decide,
not anything held in one process."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from payments_shared.messages import TRANSACTIONS_QUEUE

from tests.blackbox.server import API, Api, new_key
from tests.support.services import LedgerRow, TransactionsServices, ledger, transactions_services

pytestmark = pytest.mark.rabbitmq

WORKERS = 3
ROUNDS = 8


@pytest.fixture(scope="module")
def competing(isolated_rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransactionsServices]:
    with transactions_services(tmp_path_factory.mktemp("competing"), isolated_rabbitmq_url) as services:
        for _ in range(WORKERS - 1):
            services.start_competing_worker()
        yield services


@pytest.fixture
def api(competing: TransactionsServices) -> Iterator[Api]:
    with httpx.Client(base_url=competing.base_url, timeout=30) as http:
        yield Api(http)


def consumers(broker_url: str, queue: str) -> int:
    """Consumers attached to `queue` (`list_consumers`: `list_queues` shows 0 for a quorum queue's)."""
    vhost = urlparse(broker_url).path.lstrip("/")
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_consumers", "-p", vhost, "queue_name", "--no-table-headers"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    return listed.split().count(queue)


async def race(api: Api, *requests: tuple[str, dict[str, object], str]) -> list[httpx.Response]:
    """Every (route, body, key) sent at once, each on its own connection."""
    async with httpx.AsyncClient(base_url=str(api.http.base_url), timeout=30) as client:
        return await asyncio.gather(
            *(client.post(f"{API}/{route}", json=body, headers=api.headers(key=key)) for route, body, key in requests)
        )


def new_rows(data_dir: Path, before: int) -> list[LedgerRow]:
    return ledger(data_dir)[before:]


def test_every_worker_consumes_the_queue(competing: TransactionsServices, isolated_rabbitmq_url: str) -> None:
    assert consumers(isolated_rabbitmq_url, TRANSACTIONS_QUEUE) == WORKERS


async def test_racing_refunds_never_pass_the_capture(competing: TransactionsServices, api: Api) -> None:
    before = len(ledger(competing.data_dir))
    refunded = 0
    for _ in range(ROUNDS):
        charged = api.charge(amount=1000, key=new_key()).json()
        body = {"transaction_id": charged["id"], "amount": 300}
        answers = await race(api, *(("refund", body, new_key()) for _ in range(8)))
        assert {answer.status_code for answer in answers} <= {200, 409}, [answer.text for answer in answers]
        succeeded = sum(answer.status_code == 200 for answer in answers)
        assert 1 <= succeeded <= 3
        final = api.get(charged["id"]).json()
        assert (final["amount_refunded"], len(final["refunds"])) == (300 * succeeded, succeeded)
        refunded += 300 * succeeded
    refunds = [row for row in new_rows(competing.data_dir, before) if row.operation == "refund"]
    assert sum(row.amount for row in refunds) == refunded  # the provider refunded exactly what was answered 200


async def test_a_capture_racing_a_void_on_another_worker_cannot_both_win(
    competing: TransactionsServices, api: Api
) -> None:
    before = len(ledger(competing.data_dir))
    for _ in range(ROUNDS):
        authorized = api.authorize(amount=1000, key=new_key()).json()
        body = {"transaction_id": authorized["id"]}
        capture, void = await race(api, ("capture", body, new_key()), ("void", body, new_key()))
        assert sorted([capture.status_code, void.status_code]) == [200, 409], (capture.text, void.text)
        winner = "captured" if capture.status_code == 200 else "voided"
        assert api.get(authorized["id"]).json()["status"] == winner
    settled = [row.operation for row in new_rows(competing.data_dir, before) if row.operation in ("capture", "void")]
    assert len(settled) == ROUNDS  # one provider call per authorization, by whichever won


async def test_one_key_sent_to_every_worker_at_once_charges_once(competing: TransactionsServices, api: Api) -> None:
    before = len(ledger(competing.data_dir))
    for _ in range(ROUNDS):
        key = new_key()
        answers = await race(
            api,
            *(("charge", {"amount": 700, "currency": "usd", "payment_method": "pm_card_visa"}, key) for _ in range(8)),
        )
        assert {answer.status_code for answer in answers} <= {201, 409}, [answer.text for answer in answers]
        charged = {answer.json()["id"] for answer in answers if answer.status_code == 201}
        assert len(charged) == 1
    payments = [row for row in new_rows(competing.data_dir, before) if row.operation == "pay"]
    assert len(payments) == ROUNDS
