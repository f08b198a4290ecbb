"""Broker outage (services mode): the gateway and the worker reach RabbitMQ through a TCP proxy that the test cuts
in the middle of a load of charges, then restores. During the outage the gateway answers 503 or 202 and never
hangs past its deadline; afterwards both services have reconnected by themselves, every charge the gateway
accepted (201, 402 or 202) reaches its outcome without being sent again, and every refused one succeeds when
retried with its key — each moving money exactly once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from payments_shared import ids

from tests.blackbox.server import Api, new_key, new_workspace
from tests.support.proxy_thread import ThreadedProxy
from tests.support.services import ledger, transactions_services, wait_until

pytestmark = pytest.mark.rabbitmq

RPC_TIMEOUT_S = 3.0
# Publisher confirms and the gateway's own margin: an answer later than this is a hang.
ANSWER_BOUND_S = RPC_TIMEOUT_S + 1.0 + 5.0
OUTAGE_S = 4.0
CLIENTS = 4
ACCEPTED = {201, 402, 202}
FINAL = {"captured", "failed", "requires_action"}


@dataclass
class Answer:
    key: str
    status: int  # 0: no HTTP answer at all
    elapsed_s: float
    during_outage: bool


def load(base_url: str, workspace: str, answers: list[Answer], stop: threading.Event, outage: threading.Event) -> None:
    with httpx.Client(base_url=base_url, timeout=ANSWER_BOUND_S + 10) as http:
        api = Api(http, workspace)
        while not stop.is_set():
            key = new_key()
            in_outage = outage.is_set()
            started = time.monotonic()
            try:
                status = api.charge(key=key).status_code
            except httpx.HTTPError:
                status = 0
            answers.append(Answer(key, status, time.monotonic() - started, in_outage or outage.is_set()))


def charged_with_key(api: Api, key: str) -> bool:
    return api.charge(key=key).status_code == 201


def is_final(api: Api, transaction_id: str) -> bool:
    response = api.get(transaction_id)
    return response.status_code == 200 and response.json()["status"] in FINAL


def test_services_ride_out_a_broker_outage_without_losing_an_accepted_charge(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    target = urlparse(isolated_rabbitmq_url)
    with ThreadedProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        proxied = isolated_rabbitmq_url.replace(f":{target.port or 5672}/", f":{proxy.port}/")
        env = {"RPC_TIMEOUT_S": str(RPC_TIMEOUT_S), "IN_FLIGHT_WINDOW_S": "2", "RECOVERY_MIN_AGE_S": "3"}
        with transactions_services(tmp_path, proxied, env) as services:
            workspace = new_workspace()
            answers: list[Answer] = []
            stop, outage = threading.Event(), threading.Event()
            clients = [
                threading.Thread(target=load, args=(services.base_url, workspace, answers, stop, outage))
                for _ in range(CLIENTS)
            ]
            for client in clients:
                client.start()
            time.sleep(1.5)
            outage.set()
            proxy.cut()
            time.sleep(OUTAGE_S)
            proxy.restore()
            outage.clear()
            wait_until(services.worker_ready, 30, "the worker to reconnect")
            stop.set()
            for client in clients:
                client.join(timeout=60)

            assert all(answer.status != 0 for answer in answers), "a request got no HTTP answer"
            assert max(answer.elapsed_s for answer in answers) < ANSWER_BOUND_S  # never hung past its deadline
            in_outage = [answer for answer in answers if answer.during_outage]
            assert {answer.status for answer in in_outage} <= {503, 202, 201, 402}
            assert any(answer.status == 503 for answer in in_outage), "the outage was not noticed"

            api = Api(httpx.Client(base_url=services.base_url, timeout=30), workspace)
            # Both services reconnected by themselves: a charge goes through (retried with its key, as a client does,
            # should the first answer be a 202 or 503 while the worker still works through the outage's backlog).
            wait_until(partial(charged_with_key, api, new_key()), 30, "a charge after the outage")
            for answer in answers:
                transaction_id = ids.derived_id("txn", ids.command_id(workspace, answer.key))
                if answer.status in ACCEPTED:  # must reach its outcome without being sent again
                    wait_until(partial(is_final, api, transaction_id), 30, f"{answer.key} to finish")
                else:  # refused while the broker was away: the client's retry with the key succeeds
                    wait_until(partial(charged_with_key, api, answer.key), 30, f"a retry of {answer.key}")
            keys = {ids.command_id(workspace, answer.key) for answer in answers}
            pay_rows = [row for row in ledger(tmp_path) if row.operation == "pay"]
            assert len(pay_rows) == len(keys) + 1  # one charge per key (and the one after the outage)
            assert keys <= {row.idempotency_key for row in pay_rows}


def test_a_keyless_charge_whose_confirm_is_lost_is_not_told_to_retry(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    """The gateway reaches RabbitMQ through a proxy that loses RabbitMQ's answers (the publisher confirm, the
    reply) while the worker, connected directly, makes the charge. A client without an Idempotency-Key told
    "retry later" would pay twice: it is told the charge may have been made, and which transaction to read."""
    target = urlparse(isolated_rabbitmq_url)
    with ThreadedProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        proxied = isolated_rabbitmq_url.replace(f":{target.port or 5672}/", f":{proxy.port}/")
        env = {"RPC_TIMEOUT_S": str(RPC_TIMEOUT_S)}
        with (
            transactions_services(tmp_path, isolated_rabbitmq_url, env, gateway_broker_url=proxied) as services,
            httpx.Client(base_url=services.base_url, timeout=ANSWER_BOUND_S + 10) as http,
        ):
            api = Api(http, new_workspace())
            assert api.charge(key=new_key()).status_code == 201  # the gateway has declared the queue
            proxy.mute()
            response = api.charge()  # no Idempotency-Key
            proxy.cut()
            proxy.unmute()
            proxy.restore()

            assert response.status_code == 503
            error = response.json()["error"]
            assert "Retry-After" not in response.headers
            assert "may still be carried out" in error["message"]
            assert [row.operation for row in ledger(tmp_path)] == ["pay", "pay"]  # this charge was made, once
            wait_until(partial(is_final, api, error["transaction_id"]), 30, "the charge to be read through the gateway")
            assert api.get(error["transaction_id"]).json()["status"] == "captured"
