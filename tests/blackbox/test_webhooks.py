"""Provider webhooks over a real socket: the embedded server started with STRIPE_WEBHOOK_SECRET and
AUTHNET_SIGNATURE_KEY; every forgery refused with nothing recorded, each event recorded once (also under 20
concurrent deliveries), body limits, unknown event types and objects acknowledged.

"Nothing recorded" is observed from outside: after the refused deliveries, the genuine event with the same id is
still answered `duplicate: false`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox.server import Server, embedded_server

STRIPE_SECRETS = ("whsec_blackbox_old_0123456789", "whsec_blackbox_new_0123456789")
ANET_KEY = "7A3F1C0DE5B2" * 10 + "ABCD"
STRIPE = "/api/v1/webhooks/stripe"
AUTHNET = "/api/v1/webhooks/authnet"
RECEIVED = {"received": True, "duplicate": False}
DUPLICATE = {"received": True, "duplicate": True}


def webhook_env(**extra: str) -> dict[str, str]:
    return {
        "STRIPE_WEBHOOK_SECRET": ",".join(STRIPE_SECRETS),
        "AUTHNET_SIGNATURE_KEY": ANET_KEY,
        "RATE_LIMIT_READ": "600/minute",
        "RATE_LIMIT_WRITE": "300/minute",
        **extra,
    }


@pytest.fixture(scope="module")
def webhook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with embedded_server(tmp_path_factory.mktemp("webhooks"), **webhook_env()) as running:
        yield running


@pytest.fixture
def client(webhook_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=webhook_server.base_url, timeout=30) as http:
        yield http


def stripe_event(event_type: str = "payment_intent.succeeded", obj: dict[str, Any] | None = None) -> bytes:
    body = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-09-30",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj or {"id": f"pi_{uuid.uuid4().hex[:24]}", "object": "payment_intent"}},
    }
    return json.dumps(body).encode()


def stripe_signature(body: bytes, secret: str = STRIPE_SECRETS[1], timestamp: int | None = None) -> str:
    at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def stripe_headers(body: bytes, **signature: Any) -> dict[str, str]:
    return {"Stripe-Signature": stripe_signature(body, **signature), "Content-Type": "application/json"}


def authnet_event(event_type: str = "net.authorize.payment.authcapture.created", trans_id: str = "") -> bytes:
    body = {
        "notificationId": str(uuid.uuid4()),
        "eventType": event_type,
        "eventDate": time.strftime("%Y-%m-%dT%H:%M:%S.1234567Z", time.gmtime()),
        "webhookId": str(uuid.uuid4()),
        "payload": {
            "responseCode": 1,
            "authCode": "LZ6I19",
            "avsResponse": "Y",
            "authAmount": 45.0,
            "entityName": "transaction",
            "id": trans_id or str(uuid.uuid4().int)[:11],
        },
    }
    return json.dumps(body).encode()


def authnet_headers(body: bytes, key: str = ANET_KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha512).hexdigest().upper()
    return {"X-ANET-Signature": f"sha512={digest}", "Content-Type": "application/json"}


def test_a_valid_stripe_event_is_received_then_a_duplicate(client: httpx.Client) -> None:
    body = stripe_event()
    first = client.post(STRIPE, content=body, headers=stripe_headers(body))
    assert (first.status_code, first.json()) == (200, RECEIVED)
    again = client.post(STRIPE, content=body, headers=stripe_headers(body))
    assert (again.status_code, again.json()) == (200, DUPLICATE)


def test_both_rotated_stripe_secrets_verify(client: httpx.Client) -> None:
    for secret in STRIPE_SECRETS:
        body = stripe_event()
        response = client.post(STRIPE, content=body, headers=stripe_headers(body, secret=secret))
        assert (response.status_code, response.json()) == (200, RECEIVED)


def test_a_valid_authnet_event_is_received_then_a_duplicate(client: httpx.Client) -> None:
    body = authnet_event()
    first = client.post(AUTHNET, content=body, headers=authnet_headers(body))
    assert (first.status_code, first.json()) == (200, RECEIVED)
    lower_case = {**authnet_headers(body), "X-ANET-Signature": authnet_headers(body)["X-ANET-Signature"].lower()}
    again = client.post(AUTHNET, content=body, headers=lower_case)
    assert (again.status_code, again.json()) == (200, DUPLICATE)


async def test_twenty_concurrent_deliveries_are_recorded_once(webhook_server: Server) -> None:
    body = stripe_event()
    headers = stripe_headers(body)
    async with httpx.AsyncClient(base_url=webhook_server.base_url, timeout=30) as http:
        responses = await asyncio.gather(*(http.post(STRIPE, content=body, headers=headers) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 19


def assert_invalid_signature(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_signature")


def test_every_stripe_forgery_is_refused_and_nothing_is_recorded(client: httpx.Client) -> None:
    body = stripe_event()
    now = int(time.time())
    forgeries: list[tuple[bytes, dict[str, str]]] = [
        (body, {"Content-Type": "application/json"}),  # no header
        (body, stripe_headers(body, secret="whsec_someone_else")),  # wrong secret
        (body.replace(b'"livemode": false', b'"livemode": true'), stripe_headers(body)),  # tampered body
        # Past the 300 s tolerance by a margin: `now` is truncated to the second and the server checks a moment
        # later, so with ±301 the future one fell inside the tolerance once (truncation + latency ≥ 1 s).
        (body, stripe_headers(body, timestamp=now - 310)),  # stale
        (body, stripe_headers(body, timestamp=now + 310)),  # from the future
        (body, {"Stripe-Signature": "this is not a signature"}),  # malformed
        (body, {"Stripe-Signature": stripe_signature(body).split(",")[1]}),  # no timestamp
        (body, {"Stripe-Signature": f"t={now}"}),  # no v1
        (body, {"Stripe-Signature": stripe_signature(body).replace("v1=", "v0=")}),  # other scheme only
    ]
    for content, headers in forgeries:
        assert_invalid_signature(client.post(STRIPE, content=content, headers=headers))
    genuine = client.post(STRIPE, content=body, headers=stripe_headers(body))
    assert (genuine.status_code, genuine.json()) == (200, RECEIVED)


def test_every_authnet_forgery_is_refused_and_nothing_is_recorded(client: httpx.Client) -> None:
    body = authnet_event()
    signature = authnet_headers(body)["X-ANET-Signature"]
    hex_decoded_key = hmac.new(bytes.fromhex(ANET_KEY), body, hashlib.sha512).hexdigest()
    forgeries: list[tuple[bytes, dict[str, str]]] = [
        (body, {}),  # no header
        (body, authnet_headers(body, key="ANOTHERKEY0123")),  # wrong key
        (body.replace(b"45.0", b"4500.0"), authnet_headers(body)),  # tampered body
        (body, {"X-ANET-Signature": signature.removeprefix("sha512=")}),  # missing prefix
        (body, {"X-ANET-Signature": "sha256=" + signature.removeprefix("sha512=")}),  # other algorithm
        (body, {"X-ANET-Signature": f"sha512={hex_decoded_key}"}),  # key hex-decoded: not Authorize.net's rule
        (body, {"X-ANET-Signature": "sha512="}),  # empty
    ]
    for content, headers in forgeries:
        assert_invalid_signature(client.post(AUTHNET, content=content, headers=headers))
    genuine = client.post(AUTHNET, content=body, headers=authnet_headers(body))
    assert (genuine.status_code, genuine.json()) == (200, RECEIVED)


def test_an_oversize_body_is_413(client: httpx.Client) -> None:
    body = b'{"id": "evt_big", "padding": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post(STRIPE, content=body, headers=stripe_headers(body))
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_an_oversize_chunked_body_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    response = client.post(STRIPE, content=chunks(), headers={"Stripe-Signature": f"t={int(time.time())},v1=00"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        b"this is not json",
        b"[]",
        b'{"object": "event"}',
        json.dumps({"id": "evt_x", "type": "payment_intent.succeeded", "created": 1}).encode(),  # no data.object
        # created past the last second a datetime holds (was a 500)
        json.dumps({**json.loads(stripe_event()), "created": 10**20}).encode(),
        json.dumps({**json.loads(stripe_event()), "created": 253_402_300_800}).encode(),
        json.dumps({**json.loads(stripe_event()), "created": -1}).encode(),
        # text no UTF-8 can carry (a lone surrogate): it could be neither stored nor shown (was a 500)
        stripe_event().replace(b'"object": "payment_intent"', b'"object": "payment_intent", "description": "\\ud800"'),
    ],
)
def test_a_signed_body_that_is_not_a_stripe_event_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post(STRIPE, content=body, headers=stripe_headers(body))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] != "invalid_signature"


def with_event_date(event_date: str) -> bytes:
    return json.dumps({**json.loads(authnet_event()), "eventDate": event_date}).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"eventType": "net.authorize.payment.void.created"}).encode(),
        with_event_date("yesterday"),
        with_event_date("2026-11-27T06:00:00"),  # no time zone
        # dates its offset moves out of the calendar (were a 500)
        with_event_date("0001-01-01T00:00:00+05:00"),
        with_event_date("9999-12-31T23:59:59.1234567-05:00"),
        authnet_event().replace(b'"eventType"', b'"\\udc00": 1, "eventType"'),
    ],
)
def test_a_signed_body_that_is_not_an_authnet_notification_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post(AUTHNET, content=body, headers=authnet_headers(body))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_payload"


def test_unknown_event_types_are_recorded_and_acknowledged(client: httpx.Client) -> None:
    stripe_body = stripe_event("balance.available", {"id": "bal_1", "object": "balance"})
    authnet_body = authnet_event("net.authorize.something.new")
    for route, body, headers in (
        (STRIPE, stripe_body, stripe_headers(stripe_body)),
        (AUTHNET, authnet_body, authnet_headers(authnet_body)),
    ):
        assert client.post(route, content=body, headers=headers).json() == RECEIVED
        assert client.post(route, content=body, headers=headers).json() == DUPLICATE


def test_events_about_unknown_objects_are_recorded_and_acknowledged(client: httpx.Client) -> None:
    bodies = [
        stripe_event("payment_intent.succeeded", {"id": "pi_nobody_knows", "object": "payment_intent"}),
        stripe_event("charge.refunded", {"id": "ch_nobody_knows", "object": "charge", "amount_refunded": 100}),
        stripe_event("customer.subscription.updated", {"id": "sub_nobody_knows", "object": "subscription"}),
        stripe_event("invoice.paid", {"id": "in_nobody_knows", "object": "invoice", "subscription": "sub_x"}),
    ]
    for body in bodies:
        assert client.post(STRIPE, content=body, headers=stripe_headers(body)).json() == RECEIVED
        assert client.post(STRIPE, content=body, headers=stripe_headers(body)).json() == DUPLICATE
    body = authnet_event("net.authorize.payment.void.created", trans_id="99999999999")
    assert client.post(AUTHNET, content=body, headers=authnet_headers(body)).json() == RECEIVED


def stored_events(server: Server) -> str:
    database = sqlite3.connect(f"file:{server.data_dir / 'events.db'}?mode=ro", uri=True)
    try:
        return "\n".join(f"{stream} {data}" for stream, data in database.execute("SELECT stream, data FROM events"))
    finally:
        database.close()


def test_a_card_number_in_a_signed_event_is_not_recorded(client: httpx.Client, webhook_server: Server) -> None:
    # Providers never send one, but a description typed at the provider may hold one; the event store must not.
    visa, mastercard, amex = "4000056655665556", "5555 5555 5555 4444", "378282246310005"
    stripe_body = stripe_event(obj={"id": "pi_card_text", "object": "payment_intent", "description": f"card {visa}"})
    headers = {**stripe_headers(stripe_body), "User-Agent": f"Stripe/1.0 {mastercard}"}
    assert client.post(STRIPE, content=stripe_body, headers=headers).json() == RECEIVED
    trans_id = "4222222222222"  # Luhn-valid, but an identifier: kept, or the event would name nothing
    authnet_body = authnet_event(trans_id=trans_id).replace(b'"LZ6I19"', json.dumps(f"ref {amex}").encode())
    assert client.post(AUTHNET, content=authnet_body, headers=authnet_headers(authnet_body)).json() == RECEIVED
    stored = stored_events(webhook_server)
    assert "pi_card_text" in stored and trans_id in stored
    for card in (visa, mastercard, mastercard.replace(" ", ""), amex):
        assert card not in stored


def test_a_provider_without_a_secret_is_refused_with_503(tmp_path: Path) -> None:
    env = webhook_env(STRIPE_WEBHOOK_SECRET="", AUTHNET_SIGNATURE_KEY="", RATE_LIMIT_WEBHOOK="2/minute")
    with embedded_server(tmp_path, **env) as running, httpx.Client(base_url=running.base_url, timeout=30) as http:
        body = stripe_event()
        stripe_answer = http.post(STRIPE, content=body, headers=stripe_headers(body))
        authnet_answer = http.post(AUTHNET, content=body, headers=authnet_headers(body))
        assert (stripe_answer.status_code, authnet_answer.status_code) == (503, 503)
        assert stripe_answer.headers["Retry-After"] == authnet_answer.headers["Retry-After"] == "300"  # API.md's 503
        for secret in (*STRIPE_SECRETS, ANET_KEY):
            assert secret not in stripe_answer.text + authnet_answer.text
        limited = http.post(STRIPE, content=body, headers=stripe_headers(body))
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(("trusted", "shared_budget"), [("127.0.0.1", False), ("192.0.2.1", True)])
def test_webhook_budgets_are_per_source_behind_a_trusted_proxy_only(
    tmp_path: Path, trusted: str, shared_budget: bool
) -> None:
    """Behind a proxy (the Ingress) every delivery comes from the proxy's address: the source is the one it puts in
    X-Forwarded-For when FORWARDED_ALLOW_IPS trusts it (deploy/k8s's ConfigMap), else the proxy's own address."""
    env = webhook_env(RATE_LIMIT_WEBHOOK="2/minute", FORWARDED_ALLOW_IPS=trusted)
    with embedded_server(tmp_path, **env) as running, httpx.Client(base_url=running.base_url, timeout=30) as http:

        def deliver(source: str) -> int:
            body = stripe_event()
            headers = {**stripe_headers(body), "X-Forwarded-For": source}
            return http.post(STRIPE, content=body, headers=headers).status_code

        assert [deliver("203.0.113.7") for _ in range(3)] == [200, 200, 429]
        assert deliver("198.51.100.9") == (429 if shared_budget else 200)
