"""Idempotency over a real socket: replays are byte-identical and add no event, concurrent duplicates make one
transaction, a reused key with another body is 422, keys are per workspace; also for capture/refund/void."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from payments_shared import ids

from tests.blackbox.server import API, Api, Server, new_key
from tests.blackbox.test_customers import Billing, error_of


def event_count(api: Api, transaction_id: str) -> int:
    response = api.events(transaction_id)
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


def test_three_sequential_replays_are_byte_identical_and_add_no_event(api: Api) -> None:
    key = new_key()
    first = api.charge(key=key, amount=2500)
    assert first.status_code == 201
    assert first.headers.get("Idempotent-Replayed") is None
    transaction_id = first.json()["id"]
    events_after_first = event_count(api, transaction_id)
    for _ in range(3):
        replay = api.charge(key=key, amount=2500)
        assert replay.status_code == 201
        assert replay.content == first.content
        assert replay.headers["Idempotent-Replayed"] == "true"
    assert event_count(api, transaction_id) == events_after_first


def test_replay_of_a_decline_is_the_same_402(api: Api) -> None:
    key = new_key()
    first = api.charge(key=key, payment_method="pm_card_chargeDeclined")
    assert first.status_code == 402
    replay = api.charge(key=key, payment_method="pm_card_chargeDeclined")
    assert replay.status_code == 402
    assert replay.content == first.content
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_sixteen_concurrent_requests_with_one_key_make_one_transaction(server: Server, api: Api) -> None:
    key = new_key()
    body = {"amount": 777, "currency": "usd", "payment_method": "pm_card_visa"}
    headers = api.headers(key=key)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            return client.post(f"{API}/charge", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(send, range(16)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    assert 201 in statuses
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1
    transaction_id = ids.pop()
    created_events = [e for e in api.events(transaction_id).json()["data"] if e["stream_version"] == 0]
    assert len(created_events) == 1
    settled = api.charge(key=key, amount=777)
    assert settled.status_code == 201
    assert settled.json()["id"] == transaction_id


def test_same_key_with_a_different_body_is_422(api: Api) -> None:
    key = new_key()
    assert api.charge(key=key, amount=1000).status_code == 201
    response = api.charge(key=key, amount=1001)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "idempotency_error"


def test_same_key_in_two_workspaces_makes_two_transactions(http: httpx.Client) -> None:
    key = new_key()
    first, second = Api(http), Api(http)
    one = first.charge(key=key)
    two = second.charge(key=key)
    assert one.status_code == two.status_code == 201
    assert two.headers.get("Idempotent-Replayed") is None
    assert one.json()["id"] != two.json()["id"]
    assert one.json()["workspace"] == first.workspace
    assert two.json()["workspace"] == second.workspace


def test_refund_with_a_key_happens_once(api: Api) -> None:
    charged = api.charge(amount=1000).json()
    key = new_key()
    first = api.post("refund", {"transaction_id": charged["id"], "amount": 400}, key=key)
    assert first.status_code == 200
    for _ in range(2):
        again = api.post("refund", {"transaction_id": charged["id"], "amount": 400}, key=key)
        assert again.status_code == 200
        assert again.content == first.content
        assert again.headers["Idempotent-Replayed"] == "true"
    assert api.get(charged["id"]).json()["amount_refunded"] == 400


def test_capture_and_void_with_keys_are_idempotent(api: Api) -> None:
    to_capture = api.authorize(amount=900).json()
    key = new_key()
    first = api.post("capture", {"transaction_id": to_capture["id"]}, key=key)
    assert first.status_code == 200
    replay = api.post("capture", {"transaction_id": to_capture["id"]}, key=key)
    assert (replay.status_code, replay.content) == (200, first.content)
    to_void = api.authorize(amount=900).json()
    key = new_key()
    voided = api.post("void", {"transaction_id": to_void["id"]}, key=key)
    assert voided.status_code == 200
    replay = api.post("void", {"transaction_id": to_void["id"]}, key=key)
    assert (replay.status_code, replay.content) == (200, voided.content)
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_bad_idempotency_keys_are_400(api: Api) -> None:
    for key in ("k" * 256, "tab\tinside"):
        response = api.post("charge", {"amount": 1, "currency": "usd", "payment_method": "pm_card_visa"}, key=key)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "Idempotency-Key"


def test_a_charges_key_is_refused_on_every_other_route_and_makes_nothing_there(api: Api) -> None:
    """A key is one operation's, whatever the route: a charge's key on a customer or subscription used to create one
    (the sandbox then answered its provider call with the charge's recorded result)."""
    billing = Billing(api.http, workspace=api.workspace)
    customer_id = billing.customer()["id"]
    key = new_key()
    charged = api.charge(key=key, amount=1000)
    assert charged.status_code == 201
    refused = [
        billing.create_customer(key),
        billing.subscribe(key, customer_id=customer_id),
        billing.call("PUT", f"customers/{customer_id}", {"name": "B"}, key),
        api.post("refund", {"transaction_id": charged.json()["id"]}, key=key),
    ]
    for response in refused:
        assert error_of(response, 422)["type"] == "idempotency_error"
    again = billing.create_customer(key)  # a refused request's retry replays its refusal
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (422, refused[0].content, "true")
    command_id = ids.command_id(api.workspace, key)
    assert billing.call("GET", f"customers/{ids.derived_id('cus', command_id)}").status_code == 404
    assert billing.call("GET", f"subscriptions/{ids.derived_id('sub', command_id)}").status_code == 404
    assert billing.call("GET", f"customers/{customer_id}").json()["name"] is None
    assert api.get(charged.json()["id"]).json()["amount_refunded"] == 0


def test_a_charge_with_a_customers_key_is_recorded_failed_and_the_customer_still_replays(api: Api) -> None:
    """The other way round: a charge reusing a key that made a customer is refused (422) and recorded failed (a 202
    may have promised its transaction); the key's customer is replayed as first answered, the charge's refusal too."""
    billing = Billing(api.http, workspace=api.workspace)
    key = new_key()
    created = billing.create_customer(key)
    assert created.status_code == 201, created.text
    refused = api.charge(key=key)
    assert error_of(refused, 422)["code"] == "idempotency_key_reused"
    assert api.get(error_of(refused, 422)["transaction_id"]).json()["status"] == "failed"
    again = billing.create_customer(key)
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (201, created.content, "true")
    charged_again = api.charge(key=key)
    assert (charged_again.content, charged_again.headers["Idempotent-Replayed"]) == (refused.content, "true")
