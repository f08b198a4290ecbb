"""Fuzzing with schemathesis against the real embedded server's /openapi.json over a real socket, with a valid
admin bearer token (a fresh workspace per example, so no example is refused for another's rate budget): no
server error, and every error in API.md's shape with the status its type says.

The two 5xx that API.md itself prescribes pass only in that shape: 502 `provider_error` and 503
`provider_unavailable` (e.g. a webhook route whose signing secret is not configured). FUZZ_EXAMPLES is the number
of generated examples per operation (200 in `make test`, more in `make fuzz`); half of them are valid requests
(positive), half deliberately invalid ones (negative). Under CI=true the examples are the same on every run
(Hypothesis's derandomize): a landing is not refused for a fault nobody's change brought; elsewhere, and in
`make fuzz`, each run draws new ones.

schemathesis's pytest loader (`from_fixture`) does not run under pytest 9 (it reads `request.node._nodeid`), so
each operation's strategy is driven here with Hypothesis directly."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from payments_shared.errors import STATUS_BY_TYPE
from schemathesis.generation.modes import GenerationMode

from tests.blackbox.server import EVERY_PERMISSION, Server, mint_token, new_workspace

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "200"))
MIN_EXAMPLES_PER_OPERATION = 5
DERANDOMIZE = os.environ.get("CI") == "true"
SANDBOX_CARDS = ["pm_card_visa", "pm_card_chargeDeclined", "pm_card_authenticationRequired", "pm_card_amex"]
DOCUMENTED_5XX = {502: "provider_error", 503: "provider_unavailable"}
# Statuses FastAPI/Starlette give for routing or size limits; their body must still be in API.md's shape.
TRANSPORT_STATUSES = {405, 406, 411, 413, 415}


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")


def check_error_shape(status: int, text: str) -> None:
    """API.md: `{"error": {"type", "code", "message", "param"?, "transaction_id"?, "decline_code"?}}`."""
    body = json.loads(text)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"type", "code", "message"} <= set(error), body
    assert set(error) <= {"type", "code", "message", "param", "transaction_id", "decline_code"}, body
    assert all(isinstance(value, str) for value in error.values()), body
    if status not in TRANSPORT_STATUSES:
        assert STATUS_BY_TYPE.get(error["type"]) == status, f"{status} with type {error['type']}"


def steer_to_the_sandbox(case: Any) -> None:
    """Half of the bodies naming a payment method get one the sandbox knows (and a real currency), so the fuzz
    reaches the worker and the provider, not only validation."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("payment_method"), str):
        return
    digest = sum(json.dumps(body, sort_keys=True, default=str).encode())
    if digest % 2:
        return
    body["payment_method"] = SANDBOX_CARDS[digest // 2 % len(SANDBOX_CARDS)]
    if isinstance(body.get("currency"), str):
        body["currency"] = "usd"


def check_response(case: Any, seen: Counter[int]) -> None:
    steer_to_the_sandbox(case)
    token = mint_token(new_workspace(), EVERY_PERMISSION)
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    response = case.call(timeout=30)
    status = response.status_code
    seen[status] += 1
    where = f"{case.method} {case.formatted_path}"
    if status >= 500:
        assert status in DOCUMENTED_5XX, f"{status} for {where}: {response.text}"
        assert json.loads(response.text)["error"]["type"] == DOCUMENTED_5XX[status], f"{where}: {response.text}"
    if status >= 400:
        try:
            check_error_shape(status, response.text)
        except (AssertionError, ValueError) as error:
            raise AssertionError(f"{where} answered {status} {response.text!r}: {error}") from None


def case_strategy(operation: Any) -> Any:
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            strategies.append(operation.as_strategy(generation_mode=mode))
        except Exception:  # some operations have nothing to make invalid
            continue
    return st.one_of(*strategies)


def test_no_server_error_and_every_error_in_the_api_shape(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7, "the OpenAPI document lists too few operations"
    examples = max(MIN_EXAMPLES_PER_OPERATION, EXAMPLES_PER_OPERATION)
    failures: list[str] = []
    seen: Counter[int] = Counter()
    for operation in operations:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=DERANDOMIZE,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=case_strategy(operation))
        def fuzz(case: Any) -> None:
            check_response(case, seen)

        try:
            fuzz()
        except AssertionError as error:
            failures.append(str(error).splitlines()[0])
    print(f"fuzz: {len(operations)} operations, {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
    assert failures == []
    assert sum(seen.values()) >= len(operations) * MIN_EXAMPLES_PER_OPERATION
