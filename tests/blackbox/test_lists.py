"""The list routes over a real socket against the embedded server: Stripe-style pages (newest first, cursor,
has_more, url, projection_position), every filter, 400s naming the parameter, permissions, and that a workspace
never sees another's objects.

Lists come from projections and may lag a write by a moment: each test waits (bounded) until the page reflects
what it wrote, by `projection_position` or by the ids it expects."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.blackbox.server import API, Api, Server, mint_token, new_key, new_workspace, services
from tests.blackbox.test_customers import Billing

WAIT_S = 15.0
READ_ALL = ["payments:read", "customer:read", "subscription:read"]


def list_page(http: httpx.Client, token: str, kind: str, **params: Any) -> httpx.Response:
    return http.get(f"{API}/{kind}", params=params, headers={"Authorization": f"Bearer {token}"})


def until(fetch: Callable[[], httpx.Response], ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first 200 page for which `ready` holds (the projection caught up), within WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = fetch()
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        if ready(page) or time.monotonic() > deadline:
            return page
        time.sleep(0.05)


def last_position(api: Api, transaction_id: str) -> int:
    events = api.events(transaction_id).json()["data"]
    return int(events[-1]["position"])


def caught_up_to(position: int) -> Callable[[dict[str, Any]], bool]:
    return lambda page: int(page["projection_position"]) >= position


def charges(api: Api, count: int, **body: Any) -> list[dict[str, Any]]:
    made = []
    for _ in range(count):
        response = api.charge(key=new_key(), **body)
        assert response.status_code == 201, response.text
        made.append(response.json())
    return made


def all_pages(fetch: Callable[[str | None], dict[str, Any]]) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        page = fetch(cursor)
        pages.append(page)
        if not page["has_more"]:
            return pages
        cursor = page["data"][-1]["id"]


def test_transactions_page_newest_first_across_pages(api: Api) -> None:
    made = charges(api, 7)
    token = api.token
    until(lambda: list_page(api.http, token, "transactions"), caught_up_to(last_position(api, made[-1]["id"])))

    def fetch(cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": 3} | ({"starting_after": cursor} if cursor else {})
        response = list_page(api.http, token, "transactions", **params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    pages = all_pages(fetch)
    assert [len(page["data"]) for page in pages] == [3, 3, 1]
    assert [page["has_more"] for page in pages] == [True, True, False]
    listed = [transaction for page in pages for transaction in page["data"]]
    assert [t["id"] for t in listed] == [t["id"] for t in reversed(made)]
    assert listed[0] == api.get(made[-1]["id"]).json()  # the same object a GET returns
    first = pages[0]
    assert first["object"] == "list"
    assert first["url"] == f"{API}/transactions"
    assert isinstance(first["projection_position"], int)


def test_the_default_limit_is_10(api: Api) -> None:
    made = charges(api, 11)
    token = api.token
    page = until(lambda: list_page(api.http, token, "transactions"), caught_up_to(last_position(api, made[-1]["id"])))
    assert len(page["data"]) == 10 and page["has_more"] is True


def test_transaction_filters(api: Api, http: httpx.Client) -> None:
    billing = Billing(http, workspace=api.workspace)
    customer = billing.customer()
    mine = charges(api, 2, customer_id=customer["id"])
    other = charges(api, 1)
    authorized = api.authorize(key=new_key())
    assert authorized.status_code == 201
    token = api.token
    until(lambda: list_page(api.http, token, "transactions"), caught_up_to(last_position(api, authorized.json()["id"])))

    def ids(**params: Any) -> list[str]:
        response = list_page(api.http, token, "transactions", **params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["data"]]

    assert ids(customer_id=customer["id"]) == [mine[1]["id"], mine[0]["id"]]
    assert ids(status="authorized") == [authorized.json()["id"]]
    assert ids(status="captured", customer_id=customer["id"]) == [mine[1]["id"], mine[0]["id"]]
    assert ids(status="voided") == []
    middle = datetime.fromisoformat(other[0]["created_at"])
    assert ids(created_gte=other[0]["created_at"], created_lt=authorized.json()["created_at"]) == [other[0]["id"]]
    later = (middle + timedelta(microseconds=1)).isoformat()
    assert authorized.json()["id"] in ids(created_gte=later)
    assert other[0]["id"] not in ids(created_gte=later)
    unix_future = int((datetime.now(UTC) + timedelta(days=1)).timestamp())
    assert ids(created_gte=unix_future) == []
    assert len(ids(created_lt=unix_future)) == 4


def test_a_workspace_never_sees_another_workspaces_objects(api: Api) -> None:
    made = charges(api, 2)
    theirs = Api(api.http, workspace=new_workspace())
    their_charge = charges(theirs, 1)[0]
    latest = last_position(theirs, their_charge["id"])
    until(lambda: list_page(api.http, api.token, "transactions"), caught_up_to(latest))
    mine = list_page(api.http, api.token, "transactions").json()["data"]
    assert {t["id"] for t in mine} == {t["id"] for t in made}
    assert {t["workspace"] for t in mine} == {api.workspace}
    assert [t["id"] for t in list_page(api.http, theirs.token, "transactions").json()["data"]] == [their_charge["id"]]
    # Another workspace's id is no cursor here: answered as an unknown one.
    response = list_page(api.http, api.token, "transactions", starting_after=their_charge["id"])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "starting_after"
    # A brand-new workspace lists nothing at all.
    empty = list_page(api.http, mint_token(new_workspace()), "transactions").json()
    assert (empty["data"], empty["has_more"]) == ([], False)


def test_a_cursor_the_list_has_not_caught_up_with_is_still_a_cursor(api: Api) -> None:
    older = charges(api, 2)
    until(lambda: list_page(api.http, api.token, "transactions"), caught_up_to(last_position(api, older[-1]["id"])))
    theirs = Api(api.http, workspace=new_workspace())
    their_charge, newest = charges(theirs, 1)[0], charges(api, 1)[0]
    # At once, before the list shows it: GET answers it, so it names an object and the page is what precedes it.
    response = list_page(api.http, api.token, "transactions", starting_after=newest["id"])
    assert response.status_code == 200, response.text
    assert [t["id"] for t in response.json()["data"]] == [older[1]["id"], older[0]["id"]]
    refused = list_page(api.http, api.token, "transactions", starting_after=their_charge["id"])
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "starting_after")


@pytest.mark.parametrize(
    ("kind", "params", "param"),
    [
        ("transactions", {"limit": 0}, "limit"),
        ("transactions", {"limit": 101}, "limit"),
        ("transactions", {"limit": "ten"}, "limit"),
        # A superscript two is a digit to str.isdigit but not to int(): the query was dead-lettered (503)
        ("transactions", {"limit": "\u00b2"}, "limit"),
        ("transactions", {"status": "lost"}, "status"),
        ("transactions", {"created_gte": "yesterday"}, "created_gte"),
        ("transactions", {"created_lt": "2026-13-45"}, "created_lt"),
        # Unix times no datetime holds: a 503 after the RPC timeout (the query dead-lettered) before
        ("transactions", {"created_gte": "99999999999999999999"}, "created_gte"),
        ("transactions", {"created_lt": "-99999999999999"}, "created_lt"),
        ("transactions", {"starting_after": "txn_unknown"}, "starting_after"),
        ("transactions", {"colour": "red"}, "colour"),
        ("transactions", {"email": "a@example.com"}, "email"),
        ("customers", {"limit": 1000}, "limit"),
        ("customers", {"status": "active"}, "status"),
        ("subscriptions", {"status": "paused"}, "status"),
        ("subscriptions", {"email": "a@example.com"}, "email"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    http: httpx.Client, kind: str, params: dict[str, Any], param: str
) -> None:
    response = list_page(http, mint_token(new_workspace(), READ_ALL), kind, **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


def test_a_repeated_parameter_is_400(http: httpx.Client) -> None:
    token = mint_token(new_workspace())
    response = http.get(f"{API}/transactions?limit=2&limit=3", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


@pytest.mark.parametrize(
    ("kind", "permission"),
    [("transactions", "payments:read"), ("customers", "customer:read"), ("subscriptions", "subscription:read")],
)
def test_each_list_needs_its_read_permission(http: httpx.Client, kind: str, permission: str) -> None:
    workspace = new_workspace()
    assert list_page(http, mint_token(workspace, ["payments:charge"]), kind).status_code == 403
    assert list_page(http, mint_token(workspace, [permission]), kind).status_code == 200
    assert http.get(f"{API}/{kind}").status_code == 401


def test_customers_by_email_and_deleted_ones_are_not_listed(billing_client: Billing) -> None:
    jenny = billing_client.customer(email="jenny@example.com")
    other = billing_client.customer(email="other@example.com")
    gone = billing_client.customer(email="jenny@example.com")
    assert billing_client.call("DELETE", f"customers/{gone['id']}").status_code == 200
    token = billing_client.token()
    http = billing_client.http
    page = until(
        lambda: list_page(http, token, "customers"),
        lambda page: [c["id"] for c in page["data"]] == [other["id"], jenny["id"]],
    )
    assert [c["id"] for c in page["data"]] == [other["id"], jenny["id"]]
    assert page["data"][0] == billing_client.call("GET", f"customers/{other['id']}").json()
    assert page["url"] == f"{API}/customers"
    by_email = list_page(http, token, "customers", email="jenny@example.com").json()["data"]
    assert [c["id"] for c in by_email] == [jenny["id"]]
    assert list_page(http, token, "customers", limit=1).json()["has_more"] is True


def test_subscriptions_by_customer_and_status(billing_client: Billing) -> None:
    first = billing_client.customer(payment_method="pm_card_visa")
    second = billing_client.customer(payment_method="pm_card_visa")
    subscriptions = []
    for customer in (first, first, second):
        response = billing_client.subscribe(customer_id=customer["id"])
        assert response.status_code == 201, response.text
        subscriptions.append(response.json())
    canceled = billing_client.call("POST", f"subscriptions/{subscriptions[0]['id']}/cancel", {})
    assert canceled.status_code == 200, canceled.text
    token = billing_client.token()
    http = billing_client.http

    def listed(**params: Any) -> list[str]:
        response = list_page(http, token, "subscriptions", **params)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["data"]]

    until(
        lambda: list_page(http, token, "subscriptions", status="canceled"),
        lambda page: [s["id"] for s in page["data"]] == [subscriptions[0]["id"]],
    )
    assert listed() == [s["id"] for s in reversed(subscriptions)]
    assert listed(customer_id=first["id"]) == [subscriptions[1]["id"], subscriptions[0]["id"]]
    assert listed(status="canceled") == [subscriptions[0]["id"]]
    assert listed(customer_id=second["id"], status="canceled") == []


@pytest.fixture
def billing_client(http: httpx.Client) -> Billing:
    return Billing(http)


@pytest.fixture(scope="module")
def services_server(isolated_rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with services(tmp_path_factory.mktemp("lists-services"), isolated_rabbitmq_url) as running:
        yield running


def test_in_services_mode_the_transactions_worker_answers_the_list(services_server: Server) -> None:
    """Separate gateway and transactions processes over RabbitMQ: the worker projects and answers the list."""
    with httpx.Client(base_url=services_server.base_url, timeout=30) as http:
        api = Api(http)
        made = charges(api, 3)
        token = api.token
        page = until(
            lambda: list_page(http, token, "transactions", limit=2),
            caught_up_to(last_position(api, made[-1]["id"])),
        )
        assert [t["id"] for t in page["data"]] == [made[2]["id"], made[1]["id"]] and page["has_more"]
        rest = list_page(http, token, "transactions", limit=2, starting_after=made[1]["id"]).json()
        assert ([t["id"] for t in rest["data"]], rest["has_more"]) == ([made[0]["id"]], False)
    assert (services_server.data_dir / "readmodels.db").exists()


@pytest.mark.parametrize("kind", ["transactions", "customers", "subscriptions"])
@pytest.mark.parametrize(
    "query",
    ["4242424242424242=1", "customer_id=4242424242424242", "email=4242-4242-4242-4242", "note=4242+4242+4242+4242"],
)
def test_a_card_number_in_a_list_query_is_card_data_and_never_echoed(http: httpx.Client, kind: str, query: str) -> None:
    token = mint_token(new_workspace(), READ_ALL)
    response = http.get(f"{API}/{kind}?{query}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error.get("param")) == ("raw_card_data", None)
    assert "4242" not in response.text


@pytest.mark.parametrize("kind", ["transactions", "customers", "subscriptions"])
def test_a_huge_unknown_parameter_is_not_echoed_whole(http: httpx.Client, kind: str) -> None:
    token = mint_token(new_workspace(), READ_ALL)
    response = http.get(f"{API}/{kind}?{'k' * 50_000}=1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "k" * 100 + "…"
    assert len(response.content) < 1_000


@pytest.mark.parametrize(
    ("query", "param"),
    [("email=%ED%A0%80", "email"), ("email=caf%E9", "email"), ("%ED%A0%80=1", "\ufffd" * 3)],
)
def test_a_parameter_that_is_not_utf8_is_400_naming_it(http: httpx.Client, query: str, param: str) -> None:
    # Starlette reads such bytes as U+FFFD: the list quietly filtered on text the client never sent.
    token = mint_token(new_workspace(), READ_ALL)
    response = http.get(f"{API}/customers?{query}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
