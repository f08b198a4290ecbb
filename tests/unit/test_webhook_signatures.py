"""Signature checks and event parsing of each provider, on raw bytes."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from payments_shared.errors import ApiError
from payments_webhook_ingest import authnet, stripe

NOW = 1_800_000_000
SECRET = "whsec_test_secret"
BODY = json.dumps(
    {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": NOW,
        "data": {"object": {"id": "pi_1", "object": "payment_intent"}},
    }
).encode()


def stripe_header(body: bytes, secret: str = SECRET, timestamp: int = NOW, extra: str = "") -> str:
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}{extra}"


def authnet_header(body: bytes, key: str) -> str:
    return "sha512=" + hmac.new(key.encode(), body, hashlib.sha512).hexdigest().upper()


def refused(call: object) -> ApiError:
    assert callable(call)
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def test_stripe_valid_signature_is_accepted() -> None:
    stripe.verify(BODY, stripe_header(BODY), [SECRET], NOW, 300)


def test_stripe_any_v1_with_any_secret_is_accepted() -> None:
    header = stripe_header(BODY, "whsec_new", extra=",v1=" + "0" * 64)
    stripe.verify(BODY, header, ["whsec_old", "whsec_new"], NOW, 300)
    other_first = f"t={NOW},v1={'a' * 64}," + stripe_header(BODY, "whsec_old").split(",", 1)[1]
    stripe.verify(BODY, other_first, ["whsec_old", "whsec_new"], NOW, 300)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"t={NOW}",
        "v1=" + "0" * 64,
        f"t=abc,v1={'0' * 64}",
        f"t={NOW},v0=abc",
        f"t=1{'0' * 309},v1={'0' * 64}",  # too big for a float: the tolerance check must not overflow
        f"t=1{'0' * 5000},v1={'0' * 64}",  # past int()'s 4,300 digits
    ],
)
def test_stripe_malformed_headers_are_refused(header: str | None) -> None:
    error = refused(lambda: stripe.verify(BODY, header, [SECRET], NOW, 300))
    assert (error.status, error.code) == (400, "invalid_signature")


def test_stripe_wrong_secret_tampered_body_stale_and_future_are_refused() -> None:
    cases = [
        lambda: stripe.verify(BODY, stripe_header(BODY, "whsec_other"), [SECRET], NOW, 300),
        lambda: stripe.verify(BODY + b" ", stripe_header(BODY), [SECRET], NOW, 300),
        lambda: stripe.verify(BODY, stripe_header(BODY, timestamp=NOW - 301), [SECRET], NOW, 300),
        lambda: stripe.verify(BODY, stripe_header(BODY, timestamp=NOW + 301), [SECRET], NOW, 300),
    ]
    for case in cases:
        assert refused(case).code == "invalid_signature"
    stripe.verify(BODY, stripe_header(BODY, timestamp=NOW - 300), [SECRET], NOW, 300)


def test_stripe_non_ascii_signature_is_refused_not_crashing() -> None:
    header = f"t={NOW},v1=\u00e9\u00e9"
    assert refused(lambda: stripe.verify(BODY, header, [SECRET], NOW, 300)).code == "invalid_signature"


def test_stripe_parse_reads_the_event() -> None:
    event = stripe.parse(BODY)
    assert (event.event_id, event.type, event.object_id, event.object_type) == (
        "evt_1",
        "payment_intent.succeeded",
        "pi_1",
        "payment_intent",
    )
    assert event.provider_created == "2027-01-15T08:00:00.000000Z"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        json.dumps({"type": "x", "created": 1, "data": {"object": {}}}).encode(),
        json.dumps({"id": "evt_1", "created": 1, "data": {"object": {}}}).encode(),
        json.dumps({"id": "evt_1", "type": "x", "data": {"object": {}}}).encode(),
        json.dumps({"id": "evt_1", "type": "x", "created": 1}).encode(),
        json.dumps({"id": "evt/../1", "type": "x", "created": 1, "data": {"object": {}}}).encode(),
        b'{"id": "evt_1", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # deeper than the parser can go
    ],
)
def test_stripe_parse_refuses_what_is_not_a_stripe_event(body: bytes) -> None:
    error = refused(lambda: stripe.parse(body))
    assert (error.status, error.type) == (400, "invalid_request_error")


ANET_KEY = "0A1B2C3D4E5F" * 10 + "abcd"
ANET_BODY = json.dumps(
    {
        "notificationId": "d0e8e7fe-c3e7-4add-a480-27bc5ce28a8a",
        "eventType": "net.authorize.payment.authcapture.created",
        "eventDate": "2017-03-29T20:48:02.0080095Z",
        "webhookId": "63d6fea2-aa13-4b1d-a204-f5fbc15942b7",
        "payload": {"responseCode": 1, "authAmount": 45.0, "entityName": "transaction", "id": "60020981676"},
    }
).encode()


def test_authnet_valid_signature_in_either_case_is_accepted() -> None:
    header = authnet_header(ANET_BODY, ANET_KEY)
    authnet.verify(ANET_BODY, header, ANET_KEY)
    authnet.verify(ANET_BODY, header.lower(), ANET_KEY)
    authnet.verify(ANET_BODY, "SHA512=" + header[7:], ANET_KEY)


def test_authnet_key_is_used_as_characters_not_hex() -> None:
    hex_decoded = "sha512=" + hmac.new(bytes.fromhex(ANET_KEY), ANET_BODY, hashlib.sha512).hexdigest()
    assert refused(lambda: authnet.verify(ANET_BODY, hex_decoded, ANET_KEY)).code == "invalid_signature"


@pytest.mark.parametrize(
    "header",
    [None, "", "sha512=", "sha256=abcd", "ABCDEF", "sha512=zz"],
)
def test_authnet_bad_headers_are_refused(header: str | None) -> None:
    assert refused(lambda: authnet.verify(ANET_BODY, header, ANET_KEY)).code == "invalid_signature"


def test_authnet_missing_prefix_wrong_key_and_tampered_body_are_refused() -> None:
    good = authnet_header(ANET_BODY, ANET_KEY)
    cases = [
        lambda: authnet.verify(ANET_BODY, good.removeprefix("sha512="), ANET_KEY),
        lambda: authnet.verify(ANET_BODY, authnet_header(ANET_BODY, "other"), ANET_KEY),
        lambda: authnet.verify(ANET_BODY.replace(b"45.0", b"46.0"), good, ANET_KEY),
    ]
    for case in cases:
        assert refused(case).code == "invalid_signature"


def test_authnet_parse_reads_the_notification() -> None:
    event = authnet.parse(ANET_BODY)
    assert event.event_id == "d0e8e7fe-c3e7-4add-a480-27bc5ce28a8a"
    assert (event.type, event.object_id, event.object_type) == (
        "net.authorize.payment.authcapture.created",
        "60020981676",
        "transaction",
    )
    assert event.provider_created == "2017-03-29T20:48:02.008009Z"


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        json.dumps({"eventType": "x", "eventDate": "2017-03-29T20:48:02Z", "payload": {}}).encode(),
        json.dumps({"notificationId": "n1", "eventDate": "2017-03-29T20:48:02Z", "payload": {}}).encode(),
        json.dumps({"notificationId": "n1", "eventType": "x", "eventDate": "yesterday", "payload": {}}).encode(),
        json.dumps({"notificationId": "n1", "eventType": "x", "eventDate": "2017-03-29T20:48", "payload": {}}).encode(),
        json.dumps({"notificationId": "n1", "eventType": "x", "eventDate": "2017-03-29T20:48:02Z"}).encode(),
        b'{"payload": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}",
    ],
)
def test_authnet_parse_refuses_what_is_not_a_notification(body: bytes) -> None:
    assert refused(lambda: authnet.parse(body)).status == 400
