"""Stopping a gateway (SIGTERM, as Kubernetes and compose stop it) while requests are in flight: each ends with its
own answer, never a cut-off 500; and a gateway whose event store is out of reach does not start."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.blackbox.server import (
    API,
    base_env,
    free_port,
    mint_token,
    new_key,
    new_workspace,
    start_process,
    wait_ready,
)
from tests.blackbox.test_startup import cannot_start_reason, start

CHARGE = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"}


def test_a_charge_waiting_for_a_worker_when_the_gateway_stops_still_gets_its_202(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    # RPC_TIMEOUT_S above the old fixed 10 s of shutdown grace: the charge was cut off with a plain-text 500,
    # though it was queued and carried out once a worker came (probe).
    port = free_port()
    env = base_env(tmp_path, PORT=str(port), BROKER_URL=isolated_rabbitmq_url, RPC_TIMEOUT_S="12")
    gateway = start_process("gateway", ["-m", "payments_gateway"], env, tmp_path / "logs")
    base_url = f"http://127.0.0.1:{port}"
    answers: list[httpx.Response] = []
    try:
        wait_ready(base_url, [gateway])
        headers = {"Authorization": f"Bearer {mint_token(new_workspace())}", "Idempotency-Key": new_key()}

        def charge() -> None:  # no transactions worker runs: it waits RPC_TIMEOUT_S, then 202
            answers.append(httpx.post(f"{base_url}{API}/charge", json=CHARGE, headers=headers, timeout=30))

        waiting = threading.Thread(target=charge)
        waiting.start()
        time.sleep(1.0)
        gateway.popen.send_signal(signal.SIGTERM)
        waiting.join(timeout=30)
        assert gateway.popen.wait(timeout=30) == 0, gateway.log_tail()
    finally:
        gateway.kill()
    assert len(answers) == 1
    assert answers[0].status_code == 202, answers[0].text
    assert answers[0].json()["status"] == "pending"
    assert "Traceback" not in gateway.log_path.read_text()


def test_a_gateway_whose_event_store_is_out_of_reach_does_not_start(tmp_path: Path, isolated_rabbitmq_url: str) -> None:
    # A KurrentDB client connects when first used: the gateway started and stayed unready, while the workers
    # stopped with `cannot start` as the README says every service does.
    unreachable = f"kurrentdb://127.0.0.1:{free_port()}?tls=false"
    env = base_env(tmp_path, PORT=str(free_port()), BROKER_URL=isolated_rabbitmq_url, EVENTSTORE_URI=unreachable)
    status, output = start("payments_gateway", env)
    assert status == 1, output
    assert "EventStoreUnavailable" in cannot_start_reason(output)
