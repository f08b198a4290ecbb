"""The OpenAPI document's answers against the real ones: every route's success answer, and an error, validated
against the schema `/openapi.json` documents for its status (every answer was documented as `{}`, probe)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jsonschema
import pytest

from tests.blackbox.server import API, EVERY_PERMISSION, mint_token, new_key, new_workspace


class Client:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.spec: dict[str, Any] = http.get("/openapi.json").json()
        self.token = mint_token(new_workspace(), EVERY_PERMISSION)
        self.checked: list[tuple[str, str, int]] = []

    def call(self, method: str, route: str, documented: str, body: Any = None) -> dict[str, Any]:
        """Send, then validate the answer against what the document says `documented` (its path) answers."""
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": new_key()}
        response = self.http.request(method, f"{API}/{route}", json=body, headers=headers)
        documented_responses = self.spec["paths"][f"{API}/{documented}"][method.lower()]["responses"]
        schema = documented_responses[str(response.status_code)]["content"]["application/json"]["schema"]
        assert "$ref" in schema, (method, documented, response.status_code, schema)  # a shape, not "anything"
        answer: dict[str, Any] = response.json()
        jsonschema.validate(answer, {**schema, "components": self.spec["components"]})
        self.checked.append((method, documented, response.status_code))
        return answer


@pytest.fixture
def client(http: httpx.Client) -> Client:
    return Client(http)


def test_every_transaction_answer_has_its_documented_shape(client: Client) -> None:
    card = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa"}
    charged = client.call("POST", "charge", "charge", card)
    client.call("POST", "refund", "refund", {"transaction_id": charged["id"], "amount": 500})
    authorized = client.call("POST", "authorize", "authorize", card)
    client.call("POST", "capture", "capture", {"transaction_id": authorized["id"], "amount": 1000})
    client.call("POST", "void", "void", {"transaction_id": client.call("POST", "authorize", "authorize", card)["id"]})
    client.call("GET", f"transactions/{charged['id']}", "transactions/{transaction_id}")
    client.call("GET", f"transactions/{charged['id']}/events", "transactions/{transaction_id}/events")
    client.call("POST", "charge", "charge", {**card, "payment_method": "pm_card_chargeDeclined"})  # 402
    client.call("POST", "capture", "capture", {"transaction_id": charged["id"]})  # 409
    client.call("GET", "transactions/txn_nobody", "transactions/{transaction_id}")  # 404
    deadline = time.monotonic() + 10
    while client.call("GET", "transactions", "transactions")["data"] == []:  # the list lags its writes a moment
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert {status for _, _, status in client.checked} >= {200, 201, 402, 404, 409}


def test_every_customer_and_subscription_answer_has_its_documented_shape(client: Client) -> None:
    customer = client.call("POST", "customers", "customers", {"email": "jenny@example.com", "name": "Jenny"})
    path = f"customers/{customer['id']}"
    client.call("GET", path, "customers/{customer_id}")
    client.call("PUT", path, "customers/{customer_id}", {"phone": "+15555550100"})
    plan = {"customer_id": customer["id"], "amount": 1500, "currency": "usd", "interval": "month"}
    subscription = client.call("POST", "subscriptions", "subscriptions", {**plan, "payment_method": "pm_card_visa"})
    sub_path = f"subscriptions/{subscription['id']}"
    client.call("GET", sub_path, "subscriptions/{subscription_id}")
    client.call("PUT", sub_path, "subscriptions/{subscription_id}", {"quantity": 2})
    client.call("POST", f"{sub_path}/cancel", "subscriptions/{subscription_id}/cancel", {"at_period_end": True})
    client.call("GET", "subscriptions", "subscriptions")
    client.call("GET", "customers", "customers")
    client.call("DELETE", path, "customers/{customer_id}")
    client.call("PUT", sub_path, "subscriptions/{subscription_id}", {"quantity": 0})  # 400
    assert len(client.checked) == 11
