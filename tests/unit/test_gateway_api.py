"""The gateway app in-process (httpx over ASGI) against the in-memory broker, with a stand-in worker that
echoes the command it received: authentication, permissions, validation, card-data guard, idempotency header,
RPC pass-through, timeouts and broker failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import jwt
import pytest
from payments_gateway.app import create_app
from payments_gateway.settings import GatewaySettings
from payments_shared import ids
from payments_shared.broker.memory import InMemoryBroker
from payments_shared.broker.port import Message
from payments_shared.messages import BILLING_QUEUE, TRANSACTIONS_QUEUE

SECRET = "unit-test-secret-0123456789abcdef0123456789"
CHARGE = {"amount": 1099, "currency": "USD", "payment_method": "pm_card_visa"}


def token(permissions: list[str] | None = None, workspace: str = "ws_unit", **claims: Any) -> str:
    payload: dict[str, Any] = {
        "sub": "user_1",
        "workspace": workspace,
        "permissions": permissions if permissions is not None else ["payments:admin"],
        "exp": int(time.time()) + 300,
    }
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")


def auth(permissions: list[str] | None = None, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(permissions, **claims)}"}


async def echo_worker(message: Message) -> Mapping[str, Any]:
    command = dict(message.body)
    status = 201 if command["type"] in ("charge", "authorize") else 200
    return {"status": status, "body": {"command": command, "correlation_id": message.correlation_id}, "headers": {}}


def settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {"payments_jwt_secret": SECRET, "rpc_timeout_s": 2.0}
    values.update(overrides)
    return GatewaySettings(**values)


async def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://gw")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    broker = InMemoryBroker()
    await broker.consume(TRANSACTIONS_QUEUE, echo_worker)
    app = create_app(settings(), broker, {"broker": broker.ping})
    async with await client_for(app) as http:
        yield http
    await broker.close()


async def test_charge_becomes_the_contracted_command(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/payments/charge",
        json={**CHARGE, "metadata": {"order": "42"}},
        headers={**auth(), "Idempotency-Key": "key-1", "X-Request-Id": "req-123"},
    )
    assert response.status_code == 201
    command = response.json()["command"]
    command_id = ids.command_id("ws_unit", "key-1")
    assert command["type"] == "charge"
    assert command["workspace"] == "ws_unit"
    assert command["actor"] == "user_1"
    assert command["command_id"] == command_id
    assert command["idempotency_key"] == "key-1"
    assert command["payload"]["transaction_id"] == ids.derived_id("txn", command_id)
    assert command["payload"]["currency"] == "usd"
    assert command["payload"]["provider"] == "sandbox"
    assert command["payload"]["metadata"] == {"order": "42"}
    assert response.json()["correlation_id"] == "req-123"
    assert response.headers["x-request-id"] == "req-123"


async def test_fingerprint_ignores_currency_case_but_not_amount(client: httpx.AsyncClient) -> None:
    async def fingerprint(body: dict[str, Any]) -> str:
        response = await client.post("/api/v1/payments/charge", json=body, headers={**auth(), "Idempotency-Key": "k"})
        return str(response.json()["command"]["fingerprint"])

    first = await fingerprint(CHARGE)
    assert await fingerprint({**CHARGE, "currency": "usd"}) == first
    assert await fingerprint({**CHARGE, "amount": 1100}) != first


async def test_capture_refund_void_and_queries(client: httpx.AsyncClient) -> None:
    bodies = {
        "capture": {"transaction_id": "txn_1", "amount": 5},
        "refund": {"transaction_id": "txn_1", "reason": "requested_by_customer"},
        "void": {"transaction_id": "txn_1"},
    }
    for route, body in bodies.items():
        response = await client.post(f"/api/v1/payments/{route}", json=body, headers=auth())
        assert response.status_code == 200
        assert response.json()["command"]["type"] == route
        assert response.json()["command"]["payload"] == body
    got = await client.get("/api/v1/payments/transactions/txn_1", headers=auth(["payments:read"]))
    assert got.json()["command"]["type"] == "get_transaction"
    assert got.json()["command"]["payload"] == {"transaction_id": "txn_1"}
    events = await client.get("/api/v1/payments/transactions/txn_1/events", headers=auth())
    assert events.json()["command"]["type"] == "get_transaction_events"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHARGE, "amount": "1099"}, "amount"),
        ({**CHARGE, "amount": 10.5}, "amount"),
        ({**CHARGE, "amount": 1099.0}, "amount"),
        ({**CHARGE, "amount": True}, "amount"),
        ({**CHARGE, "amount": 0}, "amount"),
        ({**CHARGE, "amount": 100_000_000}, "amount"),
        ({**CHARGE, "currency": "usx"}, "currency"),
        ({**CHARGE, "currency": 840}, "currency"),
        ({**CHARGE, "surprise": 1}, "surprise"),
        ({"amount": 1, "currency": "usd"}, "payment_method"),
        ({**CHARGE, "payment_method": 7}, "payment_method"),
        ({**CHARGE, "payment_method": {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT"}}, "payment_method.data_value"),
        ({**CHARGE, "metadata": {"order": 42}}, "metadata.order"),
        ({**CHARGE, "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({**CHARGE, "metadata": {"k" * 41: "v"}}, "metadata." + "k" * 41),
        ({**CHARGE, "metadata": {"k": "v" * 501}}, "metadata.k"),
        ({**CHARGE, "description": "d" * 1001}, "description"),
        ({**CHARGE, "provider": "paypal"}, "provider"),
    ],
)
async def test_invalid_bodies_name_the_param(client: httpx.AsyncClient, body: dict[str, Any], param: str) -> None:
    response = await client.post("/api/v1/payments/charge", json=body, headers=auth())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


async def test_opaque_payment_method_is_accepted(client: httpx.AsyncClient) -> None:
    opaque = {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": "eyJjb2RlIjoiNTBfMl8w"}
    body = {**CHARGE, "payment_method": opaque}
    response = await client.post("/api/v1/payments/authorize", json=body, headers=auth())
    assert response.status_code == 201
    assert response.json()["command"]["payload"]["payment_method"] == opaque


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b'{"amount": NaN}', b"", b"\xff\xfe"])
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/api/v1/payments/charge", content=raw, headers={**auth(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        {**CHARGE, "description": "card 4242424242424242"},
        {**CHARGE, "metadata": {"note": "4242 4242 4242 4242"}},
        {**CHARGE, "metadata": {"4111-1111-1111-1111": "x"}},
        {**CHARGE, "payment_method": {"data_descriptor": "x", "data_value": "5555555555554444"}},
        {**CHARGE, "surprise": ["ok", {"deep": "378282246310005"}]},
        {**CHARGE, "amount": 4242424242424242},
    ],
)
async def test_card_numbers_are_refused_and_not_echoed(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/api/v1/payments/charge", json=body, headers=auth())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "raw_card_data"
    digits = "".join(ch for ch in response.text if ch.isdigit())
    for number in ("4242424242424242", "4111111111111111", "5555555555554444", "378282246310005"):
        assert number not in digits


@pytest.mark.parametrize("key", [b"", b"k" * 256, "café".encode(), b"tab\there"])
async def test_bad_idempotency_keys(client: httpx.AsyncClient, key: bytes) -> None:
    headers = [(b"Authorization", auth()["Authorization"].encode()), (b"Idempotency-Key", key)]
    response = await client.post("/api/v1/payments/charge", json=CHARGE, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


async def test_longest_idempotency_key_is_fine(client: httpx.AsyncClient) -> None:
    headers = {**auth(), "Idempotency-Key": "k" * 255}
    response = await client.post("/api/v1/payments/charge", json=CHARGE, headers=headers)
    assert response.status_code == 201


def _forged_tokens() -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "u", "workspace": "w", "permissions": ["payments:admin"]}
    return {
        "alg none": jwt.encode({**claims, "exp": now + 60}, None, algorithm="none"),
        "wrong secret": jwt.encode({**claims, "exp": now + 60}, "another-secret-0123456789abcdef01", algorithm="HS256"),
        "HS512": jwt.encode({**claims, "exp": now + 60}, SECRET, algorithm="HS512"),
        "no exp": jwt.encode(claims, SECRET, algorithm="HS256"),
        "expired": jwt.encode({**claims, "exp": now - 60}, SECRET, algorithm="HS256"),
        "no workspace": jwt.encode({"sub": "u", "permissions": [], "exp": now + 60}, SECRET, algorithm="HS256"),
        "no sub": jwt.encode({"workspace": "w", "permissions": [], "exp": now + 60}, SECRET, algorithm="HS256"),
        "permissions not a list": jwt.encode({**claims, "permissions": "payments:admin", "exp": now + 60}, SECRET),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize("name", list(_forged_tokens()))
async def test_bad_tokens_are_401(client: httpx.AsyncClient, name: str) -> None:
    bad = _forged_tokens()[name]
    response = await client.post("/api/v1/payments/charge", json=CHARGE, headers={"Authorization": f"Bearer {bad}"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert bad not in response.text


async def test_missing_authorization_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/payments/transactions/txn_1")
    assert response.status_code == 401


async def test_permissions(client: httpx.AsyncClient) -> None:
    charge_only = auth(["payments:charge"])
    assert (await client.post("/api/v1/payments/charge", json=CHARGE, headers=charge_only)).status_code == 201
    refused = await client.post("/api/v1/payments/refund", json={"transaction_id": "t"}, headers=charge_only)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    events = await client.get("/api/v1/payments/transactions/t/events", headers=auth(["payments:read"]))
    assert events.status_code == 403
    not_payments = auth(["customer:read", "payments:adminx"])
    assert (await client.get("/api/v1/payments/transactions/t", headers=not_payments)).status_code == 403


async def test_issuer_and_audience_when_configured() -> None:
    broker = InMemoryBroker()
    await broker.consume(TRANSACTIONS_QUEUE, echo_worker)
    app = create_app(settings(payments_jwt_issuer="https://issuer", payments_jwt_audience="payments"), broker, {})
    async with await client_for(app) as http:
        good = auth(iss="https://issuer", aud="payments")
        assert (await http.get("/api/v1/payments/transactions/t", headers=good)).status_code == 200
        for bad in (auth(aud="payments"), auth(iss="https://issuer"), auth(iss="https://other", aud="payments")):
            assert (await http.get("/api/v1/payments/transactions/t", headers=bad)).status_code == 401
    await broker.close()


async def test_rate_limits_have_separate_read_and_write_budgets() -> None:
    broker = InMemoryBroker()
    await broker.consume(TRANSACTIONS_QUEUE, echo_worker)
    app = create_app(settings(rate_limit_read="3/minute", rate_limit_write="2/minute"), broker, {})
    async with await client_for(app) as http:
        writes = [await http.post("/api/v1/payments/charge", json=CHARGE, headers=auth()) for _ in range(3)]
        assert [r.status_code for r in writes] == [201, 201, 429]
        assert writes[-1].json()["error"]["type"] == "rate_limit_error"
        assert int(writes[-1].headers["Retry-After"]) >= 1
        reads = [await http.get("/api/v1/payments/transactions/t", headers=auth()) for _ in range(4)]
        assert [r.status_code for r in reads] == [200, 200, 200, 429]
        other_workspace = await http.post("/api/v1/payments/charge", json=CHARGE, headers=auth(workspace="ws_other"))
        assert other_workspace.status_code == 201
    await broker.close()


async def test_worker_reply_passes_through_unchanged() -> None:
    async def replaying_worker(message: Message) -> Mapping[str, Any]:
        return {"status": 409, "body": {"error": {"type": "conflict"}}, "headers": {"Idempotent-Replayed": "true"}}

    broker = InMemoryBroker()
    await broker.consume(TRANSACTIONS_QUEUE, replaying_worker)
    async with await client_for(create_app(settings(), broker, {})) as http:
        response = await http.post("/api/v1/payments/void", json={"transaction_id": "t"}, headers=auth())
    assert response.status_code == 409
    assert response.json() == {"error": {"type": "conflict"}}
    assert response.headers["Idempotent-Replayed"] == "true"
    await broker.close()


async def test_timeout_gives_pending_charge_and_503_otherwise() -> None:
    release = asyncio.Event()
    handled: list[str] = []

    async def slow_worker(message: Message) -> Mapping[str, Any]:
        await release.wait()
        handled.append(str(message.body["type"]))
        return {"status": 201, "body": {}, "headers": {}}

    broker = InMemoryBroker()
    await broker.consume(TRANSACTIONS_QUEUE, slow_worker)
    async with await client_for(create_app(settings(rpc_timeout_s=0.2), broker, {})) as http:
        body = {**CHARGE, "metadata": {"a": "b"}}
        pending = await http.post("/api/v1/payments/charge", json=body, headers={**auth(), "Idempotency-Key": "p"})
        assert pending.status_code == 202
        body = pending.json()
        assert body["id"] == ids.derived_id("txn", ids.command_id("ws_unit", "p"))
        assert body["status"] == "pending"
        assert (body["amount"], body["currency"], body["amount_captured"]) == (1099, "usd", 0)
        assert body["metadata"] == {"a": "b"}
        refund_body = {"transaction_id": body["id"]}
        refund = await http.post(
            "/api/v1/payments/refund", json=refund_body, headers={**auth(), "Idempotency-Key": "r"}
        )
        assert refund.status_code == 503
        assert refund.json()["error"]["type"] == "provider_unavailable"
        assert "Idempotency-Key" in refund.json()["error"]["message"]  # the command goes on: retry with its key
        assert "Retry-After" in refund.headers
        read = await http.get(f"/api/v1/payments/transactions/{body['id']}", headers=auth())
        assert read.status_code == 503 and "Retry-After" in read.headers
        assert read.json()["error"]["message"] == "The service did not answer in time; retry the read."  # no key
        release.set()
        deadline = time.monotonic() + 10  # a bound for a loaded machine, never a measurement
        while len(handled) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110 - the released worker appends
            await asyncio.sleep(0.02)
    assert handled == ["charge", "refund", "get_transaction"]  # both commands were still carried out
    await broker.close()


@pytest.mark.parametrize(
    ("path", "body", "made"),
    [
        ("/api/v1/payments/customers", {"email": "jenny@example.com"}, "customer_id"),
        (
            "/api/v1/payments/subscriptions",
            {"customer_id": "cus_x", "amount": 500, "currency": "usd", "interval": "month"},
            "subscription_id",
        ),
    ],
)
async def test_a_keyless_creation_still_processing_names_the_object_it_makes(
    path: str, body: dict[str, Any], made: str
) -> None:
    """Without an Idempotency-Key, sending it again makes a second one: the 503 names the id to read first."""
    release = asyncio.Event()
    received: list[Mapping[str, Any]] = []

    async def slow_worker(message: Message) -> Mapping[str, Any]:
        received.append(message.body["payload"])
        await release.wait()
        return {"status": 201, "body": {}, "headers": {}}

    broker = InMemoryBroker()
    await broker.consume(BILLING_QUEUE, slow_worker)
    async with await client_for(create_app(settings(rpc_timeout_s=0.2), broker, {})) as http:
        permissions = ["customer:create", "subscription:create"]
        response = await http.post(path, json=body, headers=auth(permissions))
        release.set()
    assert response.status_code == 503 and "Retry-After" not in response.headers
    assert f"read {received[0][made]} before you do" in response.json()["error"]["message"]
    await broker.close()


async def test_closed_broker_is_503_with_retry_after() -> None:
    broker = InMemoryBroker()
    async with await client_for(create_app(settings(), broker, {"broker": broker.ping})) as http:
        await broker.close()
        response = await http.post("/api/v1/payments/charge", json=CHARGE, headers=auth())
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert (await http.get("/readyz")).status_code == 503


async def test_unknown_routes_and_methods_use_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/payments/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    wrong_method = await client.get("/api/v1/payments/charge")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()


async def test_health_openapi_and_docs(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": "ok"}
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/payments/charge" in spec["paths"]
    assert "PaymentBody" in spec["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200


class HangingBroker(InMemoryBroker):
    """A broker whose request never returns (stuck before the message is queued)."""

    async def request(self, queue: str, message: Message, timeout: float) -> Mapping[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_hanging_broker_is_503_not_a_pending_charge() -> None:
    broker = HangingBroker()
    async with await client_for(create_app(settings(rpc_timeout_s=0.1), broker, {})) as http:
        response = await http.post("/api/v1/payments/charge", json=CHARGE, headers=auth())
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    await broker.close()
