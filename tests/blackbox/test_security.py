"""Authentication and authorisation over a real socket: forged, unsigned, expired, incomplete and ill-typed tokens
→ 401; each route without its permission → 403; another workspace's transaction → 404 on every route."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from tests.blackbox.server import API, JWT_SECRET, Api, mint_token, new_key
from tests.blackbox.test_lists import list_page, until

ROUTES: list[tuple[str, str, str]] = [
    ("POST", "charge", "payments:charge"),
    ("POST", "authorize", "payments:authorize"),
    ("POST", "capture", "payments:capture"),
    ("POST", "refund", "payments:refund"),
    ("POST", "void", "payments:void"),
    ("GET", "transactions/{id}", "payments:read"),
    ("GET", "transactions/{id}/events", "payments:admin"),
]
ALL_PERMISSIONS = [permission for _, _, permission in ROUTES]


def request(http: httpx.Client, method: str, route: str, token: str | None, transaction_id: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    path = f"{API}/{route.format(id=transaction_id)}"
    if method == "GET":
        return http.get(path, headers=headers)
    body: dict[str, Any] = {"transaction_id": transaction_id}
    if route in ("charge", "authorize"):
        body = {"amount": 100, "currency": "usd", "payment_method": "pm_card_visa"}
    return http.post(path, json=body, headers=headers)


def bad_tokens(workspace: str) -> dict[str, str | None]:
    now = int(time.time())
    claims = {"sub": "mallory", "workspace": workspace, "permissions": ["payments:admin"]}
    return {
        "no token": None,
        "alg none": jwt.encode({**claims, "exp": now + 600}, None, algorithm="none"),
        "wrong secret": jwt.encode({**claims, "exp": now + 600}, "x" * 48, algorithm="HS256"),
        "no exp": jwt.encode(claims, JWT_SECRET, algorithm="HS256"),
        "expired": jwt.encode({**claims, "exp": now - 120}, JWT_SECRET, algorithm="HS256"),
        "no workspace": jwt.encode(
            {"sub": "mallory", "permissions": ["payments:admin"], "exp": now + 600}, JWT_SECRET, algorithm="HS256"
        ),
        "tampered payload": _tampered(mint_token(workspace, permissions=[])),
        # A NumericDate is a JSON number; PyJWT alone takes whatever int() takes.
        "exp a numeric string": jwt.encode({**claims, "exp": str(now + 600)}, JWT_SECRET, algorithm="HS256"),
        "nbf a boolean": mint_token(workspace, nbf=True),
        "iat a numeric string": mint_token(workspace, iat=str(now)),
        "nbf beyond the clocks' difference": mint_token(workspace, nbf=now + 300),
        "iat beyond the clocks' difference": mint_token(workspace, iat=now + 300),
        # An integer no float holds: the verified token's expiry was kept as float(exp), a 500.
        "exp past any float": mint_token(workspace, exp=10**309),
        # Lone surrogates: text that UTF-8 (the event store, the read models) cannot carry.
        "workspace not unicode": mint_token(f"{workspace}\udc00"),
        "workspace blank": mint_token("   "),
        "workspace with a newline": mint_token(f"{workspace}\n"),  # a tenant of its own, printed like `workspace`
        "sub with a control character": mint_token(workspace, sub="mallory\x1b[2J"),
        # Signed, but naming the workspace twice: a proxy reading the first and the gateway the last would disagree.
        "workspace named twice": jwt.api_jws.encode(
            f'{{"sub":"m","workspace":"{workspace}","permissions":["payments:admin"],"workspace":"other",'
            f'"exp":{now + 600}}}'.encode(),
            JWT_SECRET,
            algorithm="HS256",
        ),
        "sub not unicode": mint_token(workspace, sub="caf\udce9"),
        "permission not unicode": mint_token(workspace, permissions=["payments:admin", "\ud800"]),
    }


def test_a_date_claim_that_is_not_a_number_is_told_so(api: Api) -> None:
    # PyJWT read `"exp": true` as 1 and answered "The token has expired."
    token = mint_token(api.workspace, exp=True)
    response = request(api.http, "GET", "transactions/{id}", token, "txn_any")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "The token's exp claim must be a number."


def test_an_issuer_clock_a_little_ahead_is_not_refused(api: Api) -> None:
    # PyJWT alone refused `nbf` or `iat` one second ahead: a slightly fast issuer's fresh tokens failed at random.
    now = int(time.time())
    transaction_id = api.charge().json()["id"]
    claim_sets: list[dict[str, Any]] = [{"iat": now + 20}, {"nbf": now + 20}, {"iat": now + 20, "nbf": now + 20}]
    for claims in claim_sets:
        token = mint_token(api.workspace, **claims)
        response = request(api.http, "GET", "transactions/{id}", token, transaction_id)
        assert response.status_code == 200, (claims, response.text)


def _tampered(token: str) -> str:
    header, _, signature = token.split(".")
    payload = jwt.utils.base64url_encode(
        f'{{"sub":"m","workspace":"w","permissions":["payments:admin"],"exp":{int(time.time()) + 600}}}'.encode()
    ).decode()
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize("name", list(bad_tokens("w")))
def test_bad_tokens_are_401_on_every_route(api: Api, name: str) -> None:
    token = bad_tokens(api.workspace)[name]
    for method, route, _ in ROUTES:
        response = request(api.http, method, route, token, "txn_any")
        assert response.status_code == 401, (name, route, response.text)
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="payments"'  # RFC 9110: a 401 names its scheme
        if token:
            assert token not in response.text


@pytest.mark.parametrize(("method", "route", "permission"), ROUTES)
def test_each_route_needs_its_permission(api: Api, method: str, route: str, permission: str) -> None:
    transaction_id = (api.charge() if route == "refund" else api.authorize()).json()["id"]
    others = [p for p in ALL_PERMISSIONS if p not in (permission, "payments:admin")]
    without = mint_token(api.workspace, permissions=[*others, "customer:read", "subscription:create"])
    response = request(api.http, method, route, without, transaction_id)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["type"] == "permission_error"
    with_it = mint_token(api.workspace, permissions=[permission])
    assert request(api.http, method, route, with_it, transaction_id).status_code in (200, 201)


def test_admin_grants_every_payments_permission(api: Api) -> None:
    admin = mint_token(api.workspace, permissions=["payments:admin"])
    charged = request(api.http, "POST", "charge", admin, "")
    assert charged.status_code == 201
    transaction_id = charged.json()["id"]
    for method, route, _ in ROUTES[2:]:
        assert request(api.http, method, route, admin, transaction_id).status_code != 403


@pytest.mark.parametrize(("method", "route", "_permission"), [r for r in ROUTES if r[1] not in ("charge", "authorize")])
def test_another_workspaces_transaction_is_404(http: httpx.Client, method: str, route: str, _permission: str) -> None:
    owner, intruder = Api(http), Api(http)
    transaction_id = owner.authorize().json()["id"]
    response = request(http, method, route, intruder.token, transaction_id)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["type"] == "not_found"
    assert owner.get(transaction_id).json()["status"] == "authorized"


def test_other_workspace_cannot_refund_a_charge(http: httpx.Client) -> None:
    owner, intruder = Api(http), Api(http)
    transaction_id = owner.charge().json()["id"]
    assert intruder.post("refund", {"transaction_id": transaction_id}).status_code == 404
    assert owner.get(transaction_id).json()["amount_refunded"] == 0


@pytest.mark.parametrize("order", ["valid first", "valid last"])
def test_two_authorization_headers_are_401_whichever_comes_first(api: Api, order: str) -> None:
    valid, forged = f"Bearer {api.token}", f"Bearer {bad_tokens(api.workspace)['wrong secret']}"
    pair = [valid, forged] if order == "valid first" else [forged, valid]
    response = api.http.post(
        f"{API}/charge",
        json={"amount": 100, "currency": "usd", "payment_method": "pm_card_visa"},
        headers=[("Authorization", value) for value in pair],
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["message"] == "Send one Authorization header."
    assert api.token not in response.text


def test_a_workspace_that_is_not_unicode_records_nothing_and_every_list_goes_on(api: Api) -> None:
    # Such a charge was once recorded: the transactions list projection then failed on it forever (every
    # workspace's list frozen, across restarts), and with an Idempotency-Key the charge itself was a 500.
    token = mint_token("ws_caf\udce9")
    for key in (None, new_key()):
        response = api.post("charge", {"amount": 100, "currency": "usd", "payment_method": "pm_card_visa"}, key, token)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "authentication_error"
    charged = api.charge().json()["id"]
    page = until(lambda: list_page(api.http, api.token, "transactions"), lambda p: charged in str(p["data"]))
    assert [t["id"] for t in page["data"]] == [charged]
