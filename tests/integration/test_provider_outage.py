"""Provider outage (services mode): the sandbox fails every call (SANDBOX_FAULTS_FILE switches it at run time).
The worker's breaker opens after BREAKER_FAIL_MAX retryable failures; from then on charges are 503
`provider_unavailable` with Retry-After and the provider is not called — proven by healing the provider while the
breaker is still open: the refused charges leave no trace in the sandbox ledger, and their transactions record
the refusal. After the reset timeout the breaker half-opens, a trial call succeeds and closes it, and the refused
charges, retried with their keys, complete once each."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.blackbox.server import Api, new_key
from tests.support.services import events_by_stream, ledger, transactions_services, wait_until

pytestmark = pytest.mark.rabbitmq

FAIL_MAX = 4
RESET_TIMEOUT_S = 4
REFUSED_CHARGES = 5


def set_faults(path: Path, **faults: object) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(faults))
    staging.replace(path)  # the worker never reads a half-written file


def test_breaker_opens_refuses_without_calling_then_half_opens_and_closes(
    tmp_path: Path, isolated_rabbitmq_url: str
) -> None:
    faults = tmp_path / "sandbox-faults.json"
    set_faults(faults, failure_rate=1.0)
    env = {
        "SANDBOX_FAULTS_FILE": str(faults),
        "BREAKER_FAIL_MAX": str(FAIL_MAX),
        "BREAKER_RESET_TIMEOUT_S": str(RESET_TIMEOUT_S),
        "PROVIDER_RETRY_ATTEMPTS": "2",
        "PROVIDER_RETRY_BASE_S": "0.01",
        "RPC_TIMEOUT_S": "5",
    }
    with transactions_services(tmp_path, isolated_rabbitmq_url, env) as services:
        api = Api(httpx.Client(base_url=services.base_url, timeout=30))
        failing_keys: list[str] = []
        while services.breakers()["sandbox"]["state"] != "open":
            assert len(failing_keys) < FAIL_MAX, "the breaker did not open after the threshold"
            failing_keys.append(new_key())
            response = api.charge(key=failing_keys[-1])
            assert response.status_code == 503, response.text
            assert response.json()["error"]["type"] == "provider_unavailable"
        assert ledger(tmp_path) == []

        set_faults(faults, failure_rate=0.0)  # the provider is healthy again, but the breaker is still open
        refused: list[tuple[str, httpx.Response]] = []
        for _ in range(REFUSED_CHARGES):
            key = new_key()
            refused.append((key, api.charge(key=key)))
        for _, response in refused:
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("provider_unavailable", "provider_unavailable")
            assert 1 <= int(response.headers["Retry-After"]) <= RESET_TIMEOUT_S
        assert ledger(tmp_path) == []  # not one of them reached the provider
        slowest_ms = max(response.elapsed.total_seconds() for _, response in refused) * 1000
        print(f"provider outage: refused by the open breaker in at most {slowest_ms:.0f} ms (gateway round trip)")
        streams = events_by_stream(tmp_path)
        for _, response in refused:
            events = streams[response.json()["error"]["transaction_id"]]
            assert [event.type for event in events] == ["TransactionRequested", "ProviderCallFailed"]
            assert events[1].data["outcome"] == "unavailable"
            assert api.get(response.json()["error"]["transaction_id"]).json()["status"] == "pending"

        time.sleep(services.breakers()["sandbox"]["seconds_to_half_open"] or 0)
        trial = api.charge(key=new_key())
        assert trial.status_code == 201, trial.text
        assert services.breakers()["sandbox"] == {
            "state": "closed",
            "fail_counter": 0,
            "fail_max": FAIL_MAX,
            "seconds_to_half_open": None,
        }

        for key in [*failing_keys, *(key for key, _ in refused)]:
            retried = api.charge(key=key)
            assert (retried.status_code, retried.json()["status"]) == (201, "captured"), retried.text
        wait_until(lambda: len(ledger(tmp_path)) == 1 + len(failing_keys) + REFUSED_CHARGES, 10, "the ledger")
        assert len({row.idempotency_key for row in ledger(tmp_path)}) == 1 + len(failing_keys) + REFUSED_CHARGES
        logs = services.worker.log_path.read_text()
        assert "provider circuit breaker open" in logs and "provider circuit breaker closed" in logs
