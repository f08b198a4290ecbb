"""The main transaction flows again in services mode: gateway and transactions worker as separate processes
over the real RabbitMQ, sharing one SQLite file."""

from __future__ import annotations

import httpx
import pytest

from tests.blackbox.server import Api, new_key

pytestmark = pytest.mark.rabbitmq


def test_charge_and_refunds(services_http: httpx.Client) -> None:
    api = Api(services_http)
    charged = api.charge(amount=2000, currency="EUR", key=new_key())
    assert charged.status_code == 201, charged.text
    body = charged.json()
    assert (body["status"], body["currency"], body["amount_captured"]) == ("captured", "eur", 2000)
    partial = api.post("refund", {"transaction_id": body["id"], "amount": 500})
    assert partial.status_code == 200, partial.text
    assert partial.json()["status"] == "partially_refunded"
    too_much = api.post("refund", {"transaction_id": body["id"], "amount": 1501})
    assert too_much.status_code == 409
    rest = api.post("refund", {"transaction_id": body["id"]})
    assert rest.json()["status"] == "refunded"
    assert rest.json()["amount_refunded"] == 2000
    events = api.events(body["id"])
    assert events.status_code == 200
    assert all(e["metadata"]["workspace"] == api.workspace for e in events.json()["data"])


def test_authorize_and_capture(services_http: httpx.Client) -> None:
    api = Api(services_http)
    authorized = api.authorize(amount=3000)
    assert authorized.status_code == 201, authorized.text
    assert authorized.json()["status"] == "authorized"
    captured = api.post("capture", {"transaction_id": authorized.json()["id"], "amount": 2500})
    assert captured.status_code == 200, captured.text
    assert captured.json()["amount_captured"] == 2500
    assert api.get(authorized.json()["id"]).json()["status"] == "captured"


def test_void(services_http: httpx.Client) -> None:
    api = Api(services_http)
    authorized = api.authorize().json()
    voided = api.post("void", {"transaction_id": authorized["id"]})
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    assert api.post("capture", {"transaction_id": authorized["id"]}).status_code == 409


def test_idempotent_replay(services_http: httpx.Client) -> None:
    api = Api(services_http)
    key = new_key()
    first = api.charge(key=key, amount=999)
    assert first.status_code == 201
    events = len(api.events(first.json()["id"]).json()["data"])
    for _ in range(3):
        replay = api.charge(key=key, amount=999)
        assert (replay.status_code, replay.content) == (201, first.content)
        assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(api.events(first.json()["id"]).json()["data"]) == events
    assert api.charge(key=key, amount=998).status_code == 422


def test_decline(services_http: httpx.Client) -> None:
    api = Api(services_http)
    declined = api.charge(payment_method="pm_card_chargeDeclinedInsufficientFunds")
    assert declined.status_code == 402
    error = declined.json()["error"]
    assert (error["type"], error["decline_code"]) == ("card_error", "insufficient_funds")
    assert api.get(error["transaction_id"]).json()["status"] == "failed"


def test_other_workspace_sees_nothing(services_http: httpx.Client) -> None:
    owner, intruder = Api(services_http), Api(services_http)
    transaction_id = owner.charge().json()["id"]
    assert intruder.get(transaction_id).status_code == 404
    assert intruder.post("refund", {"transaction_id": transaction_id}).status_code == 404
