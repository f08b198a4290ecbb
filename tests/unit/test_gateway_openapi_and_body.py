"""What the gateway's cheaper request path must keep: the bearer scheme documented on every API operation (the
routes' one dependency is a SecurityBase, not FastAPI's HTTPBearer), the routes in their documented order (added
to the app's own router, not included), and request bodies decoded exactly as `json.loads` decodes bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from payments_gateway.app import create_app
from payments_gateway.body import find_card_number, parse_json_object
from payments_gateway.settings import GatewaySettings
from payments_shared.broker.memory import InMemoryBroker
from payments_shared.errors import ApiError
from payments_shared.unicode_text import find_unencodable_text

API_PREFIX = "/api/v1/payments/"
BEARER = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


def openapi() -> dict[str, Any]:
    app = create_app(GatewaySettings(payments_jwt_secret="s" * 40), InMemoryBroker(), {})
    return app.openapi()


def test_every_api_operation_documents_the_bearer_scheme() -> None:
    spec = openapi()
    assert spec["components"]["securitySchemes"] == {"HTTPBearer": BEARER}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            expected: list[dict[str, list[str]]] | None = [{"HTTPBearer": []}] if path.startswith(API_PREFIX) else None
            assert operation.get("security") == expected, (method, path)


def test_routes_keep_their_order() -> None:
    paths = list(openapi()["paths"])
    assert paths[:6] == [
        "/healthz",
        "/readyz",
        "/api/v1/payments/transactions",
        "/api/v1/payments/customers",
        "/api/v1/payments/subscriptions",
        "/api/v1/payments/charge",
    ]
    assert paths[-1] == "/api/v1/payments/subscriptions/{subscription_id}/cancel"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1}',
        b'\xef\xbb\xbf{"a": "\xc3\xa9"}',
        '{"a": "é", "b": [1, 2.5]}'.encode("utf-16"),
        '{"a": "é"}'.encode("utf-16-le"),
        '{"a": "é"}'.encode("utf-32"),
        b'{"a": "\\ud800", "b": 1e400}',
    ],
)
def test_bodies_decode_as_json_loads_does(raw: bytes) -> None:
    assert parse_json_object(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [b'{"a": "\xff"}', b'{"a": -Infinity}', b"\x00\x00\x00{", b'{"a": 1} x'])
def test_bodies_json_loads_refuses_are_invalid_json(raw: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        parse_json_object(raw)
    assert refused.value.code == "invalid_json"


def test_a_body_nested_deeper_than_the_parser_goes_is_invalid_json() -> None:
    with pytest.raises(ApiError) as refused:
        parse_json_object(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert (refused.value.code, refused.value.message) == (
        "invalid_json",
        "The JSON in the request body is nested too deeply.",
    )


def nested(depth: int, innermost: object) -> object:
    value = innermost
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("innermost", "found"), [("4242 4242 4242 4242", True), (4242424242424242, True), ("4242", False)]
)
def test_the_card_guard_finds_a_number_at_any_depth(innermost: object, found: bool) -> None:
    where = find_card_number(nested(20_000, innermost))  # far past the recursion limit
    assert (where is not None) is found
    if where is not None:
        assert len(where) == 20_000


def test_the_card_guard_reads_keys_too() -> None:
    assert find_card_number({"note": nested(3, {"4242-4242-4242-4242": "x"})}) == ("note", "k", "0", "k")
    assert find_card_number({"note": nested(3, {"4242": "x"}), "flag": True, "n": 1}) is None


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"description": "card 4242424242424242"}, ("description",)),
        ({"amount": 4242424242424242}, ("amount",)),
        ({"metadata": {"note": "5555-5555-5555-4444"}}, ("metadata", "note")),
        ({"extra": {"deep": ["x", "378282246310005"]}}, ("extra", "deep", "1")),
        ({"metadata": {"4111111111111111": "x"}}, ("metadata",)),
        ({"4111111111111111": "x"}, ()),
        # a key holding a number is reported at its object, never as a path through it
        ({"m": {"4111111111111111": {"note": "4242424242424242"}}}, ("m",)),
        ({"metadata": {"note": "4242"}, "flag": True, "n": 1, "none": None}, None),
    ],
)
def test_the_card_guard_says_where_it_found_a_number_without_naming_it(
    body: dict[str, object], path: tuple[str, ...] | None
) -> None:
    assert find_card_number(body) == path


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (nested(20_000, "a\ud800"), ("0", "k") * 10_000),  # far past the recursion limit
        ({"metadata": {"note": ["ok", "\udfff"]}}, ("metadata", "note", "1")),
        ({"m": {"\udc00": {"note": "\ud800"}}}, ("m", "\udc00")),  # a key: named, and never passed through
        ({"description": "\U0001f600", "n": 1, "flag": True, "none": None}, None),
    ],
)
def test_text_that_is_not_unicode_is_found_at_any_depth(body: object, path: tuple[str, ...] | None) -> None:
    assert find_unencodable_text(body) == path
