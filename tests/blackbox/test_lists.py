"""The list routes over a real socket against the embedded server: Stripe-style pages (newest first, cursor,
has_more, url, projection_position), every filter, 400s naming the parameter, permissions, and that a workspace
never sees another's objects.

Lists come from projections and may lag a write by a moment: each test waits (bounded) until the page reflects
what it wrote, by `projection_position` or by the ids it expects."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from payments_shared.eventstore.port import NO_STREAM, NewEvent
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.ids import new_id

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


# ---- ending_before and Stripe's created[...] ---------------------------------------------------------------------


def seed_transactions(server: Server, workspace: str, created_at: str, count: int) -> list[str]:
    """`count` captured transactions all created at `created_at`, to the microsecond, appended straight to the
    server's event store (which it follows, as it follows any writer's): no request can make such ties, since
    every request's transaction is created at its own clock reading."""
    ids = [new_id("txn") for _ in range(count)]  # the product's ids: hex ids hold Luhn-valid digit runs

    async def append() -> None:
        store = SqliteEventStore(server.data_dir / "events.db")
        try:
            for transaction_id in ids:
                await store.append(
                    f"transaction-{transaction_id}", captured(transaction_id, workspace, created_at), NO_STREAM
                )
        finally:
            await store.close()

    asyncio.run(append())
    return ids


def captured(transaction_id: str, workspace: str, created_at: str) -> list[NewEvent]:
    metadata = {"workspace": workspace, "actor": "seeded", "occurred_at": created_at}
    command_id = str(uuid.uuid4())
    requested = {
        "transaction_id": transaction_id,
        "kind": "charge",
        "amount": 1099,
        "currency": "usd",
        "provider": "sandbox",
        "payment_method": {"type": "token"},
        "customer_id": None,
        "description": None,
        "metadata": {},
        "command_id": command_id,
        "message_id": command_id,
        "fingerprint": None,
    }
    outcome = {"command_id": command_id, "amount": 1099, "provider_reference": f"sb_{transaction_id}"}
    return [NewEvent("TransactionRequested", requested, metadata), NewEvent("PaymentCaptured", outcome, metadata)]


def listed_ids(http: httpx.Client, token: str, kind: str, **params: Any) -> list[str]:
    response = list_page(http, token, kind, **params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def until_listed(api: Api, count: int) -> None:
    until(lambda: list_page(api.http, api.token, "transactions", limit=100), lambda page: len(page["data"]) == count)


def test_ending_before_walks_back_from_the_last_page_through_the_forward_pages_with_ties(
    api: Api, server: Server
) -> None:
    older = seed_transactions(server, api.workspace, "2026-01-01T00:00:00.000000Z", 4)
    newer = seed_transactions(server, api.workspace, "2026-01-01T00:00:00.000001Z", 3)
    made = [t["id"] for t in charges(api, 3)]
    until_listed(api, 10)

    def fetch(**params: Any) -> dict[str, Any]:
        response = list_page(api.http, api.token, "transactions", limit=3, **params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    forward = all_pages(lambda cursor: fetch(**({"starting_after": cursor} if cursor else {})))
    ids = [t["id"] for page in forward for t in page["data"]]
    assert ids == [*reversed(made), *sorted(newer, reverse=True), *sorted(older, reverse=True)]  # ties: id desc
    assert [page["has_more"] for page in forward] == [True, True, True, False]
    backward, cursor = [], forward[-1]["data"][0]["id"]
    while True:
        page = fetch(ending_before=cursor)
        backward.append(page)
        if not page["has_more"]:
            break
        cursor = page["data"][0]["id"]
    assert [page["data"] for page in reversed(backward)] == [page["data"] for page in forward[:-1]]
    assert [page["has_more"] for page in backward] == [True, True, False]
    assert [page["url"] for page in backward] == [f"{API}/transactions"] * 3
    top = fetch(ending_before=ids[0])
    assert (top["data"], top["has_more"]) == ([], False)
    # one step back from inside a run of ties: the three just before it, newest first
    assert [t["id"] for t in fetch(ending_before=ids[6])["data"]] == ids[3:6]


def test_ending_before_and_starting_after_together_are_400(api: Api) -> None:
    made = charges(api, 3)
    until_listed(api, 3)
    token = api.token
    assert listed_ids(api.http, token, "transactions", ending_before=made[0]["id"]) == [made[2]["id"], made[1]["id"]]
    assert listed_ids(api.http, token, "transactions", starting_after=made[2]["id"]) == [made[1]["id"], made[0]["id"]]
    both = list_page(api.http, token, "transactions", starting_after=made[2]["id"], ending_before=made[0]["id"])
    assert both.status_code == 400, both.text
    assert (both.json()["error"]["type"], both.json()["error"]["param"]) == ("invalid_request_error", "ending_before")


def test_ending_before_another_workspaces_object_is_400_as_an_unknown_cursor(api: Api) -> None:
    mine = charges(api, 2)
    theirs = Api(api.http, workspace=new_workspace())
    their_charge = charges(theirs, 1)[0]
    until(
        lambda: list_page(api.http, api.token, "transactions"), caught_up_to(last_position(theirs, their_charge["id"]))
    )
    assert listed_ids(api.http, api.token, "transactions", ending_before=mine[0]["id"]) == [mine[1]["id"]]
    for cursor in (their_charge["id"], "txn_unknown"):
        refused = list_page(api.http, api.token, "transactions", ending_before=cursor)
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, "ending_before")


def test_an_ending_before_cursor_the_list_has_not_caught_up_with_is_still_a_cursor(api: Api) -> None:
    older = charges(api, 2)
    until(lambda: list_page(api.http, api.token, "transactions"), caught_up_to(last_position(api, older[-1]["id"])))
    newest = charges(api, 1)[0]
    # At once, before the list may show it: nothing is newer, and it is no unknown cursor.
    response = list_page(api.http, api.token, "transactions", ending_before=newest["id"])
    assert response.status_code == 200, response.text
    assert (response.json()["data"], response.json()["has_more"]) == ([], False)


EDGE = 1_767_225_600  # 2026-01-01T00:00:00Z
AT_EDGE = {  # created at: the microsecond before second EDGE, its first, its middle, the next second's first
    "before": "2025-12-31T23:59:59.999999Z",
    "edge": "2026-01-01T00:00:00.000000Z",
    "middle": "2026-01-01T00:00:00.500000Z",
    "next": "2026-01-01T00:00:01.000000Z",
}


@pytest.fixture(scope="module")
def at_edge(server: Server) -> tuple[str, dict[str, str]]:
    """A workspace holding one transaction at each time of AT_EDGE: name → id."""
    workspace = new_workspace()
    ids = {name: seed_transactions(server, workspace, at, 1)[0] for name, at in AT_EDGE.items()}
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        until(lambda: list_page(http, mint_token(workspace), "transactions"), lambda page: len(page["data"]) == 4)
    return workspace, ids


@pytest.mark.parametrize(
    ("param", "second", "expected"),
    [
        ("created[gt]", EDGE - 1, ["next", "middle", "edge"]),
        ("created[gt]", EDGE, ["next"]),  # in the same second is not after it
        ("created[gte]", EDGE, ["next", "middle", "edge"]),
        ("created[gte]", EDGE + 1, ["next"]),
        ("created[lt]", EDGE, ["before"]),
        ("created[lt]", EDGE + 1, ["middle", "edge", "before"]),
        ("created[lte]", EDGE, ["middle", "edge", "before"]),  # the whole second, .5 too
        ("created[lte]", EDGE - 1, ["before"]),
        ("created", EDGE, ["middle", "edge"]),
    ],
)
def test_each_created_operator_with_edge_equality(
    http: httpx.Client, at_edge: tuple[str, dict[str, str]], param: str, second: int, expected: list[str]
) -> None:
    workspace, ids = at_edge
    assert listed_ids(http, mint_token(workspace), "transactions", **{param: second}) == [ids[n] for n in expected]


def test_created_operators_combine_with_each_other_with_the_old_spelling_and_with_cursors(
    http: httpx.Client, at_edge: tuple[str, dict[str, str]]
) -> None:
    workspace, ids = at_edge
    token = mint_token(workspace)
    window = {"created[gte]": EDGE, "created[lte]": EDGE}
    assert listed_ids(http, token, "transactions", **window) == [ids["middle"], ids["edge"]]
    old = {"created_gte": AT_EDGE["middle"], "created[lt]": EDGE + 1}
    assert listed_ids(http, token, "transactions", **old) == [ids["middle"]]
    assert listed_ids(http, token, "transactions", ending_before=ids["before"], **window, limit=1) == [ids["edge"]]
    assert listed_ids(http, token, "transactions", **{"created[gt]": EDGE, "created[lt]": EDGE}) == []


@pytest.mark.parametrize("param", ["created", "created[gt]", "created[gte]", "created[lt]", "created[lte]"])
def test_a_created_operator_takes_whole_unix_seconds_only(http: httpx.Client, param: str) -> None:
    token = mint_token(new_workspace(), READ_ALL)
    assert list_page(http, token, "transactions", **{param: EDGE}).status_code == 200
    for bad in ("1.5", "2026-01-01", "soon", "", "99999999999999999999", "-99999999999999"):
        response = list_page(http, token, "transactions", **{param: bad, "created_gte": EDGE})
        assert response.status_code == 400, (bad, response.text)
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", param), bad


@pytest.mark.parametrize("kind", ["customers", "subscriptions"])
def test_customers_and_subscriptions_take_created_operators_and_ending_before(
    billing_client: Billing, kind: str
) -> None:
    customers = [billing_client.customer(payment_method="pm_card_visa") for _ in range(2)]
    made = customers
    if kind == "subscriptions":
        made = []
        for customer in customers:
            response = billing_client.subscribe(customer_id=customer["id"])
            assert response.status_code == 201, response.text
            made.append(response.json())
    token, http = billing_client.token(), billing_client.http
    until(lambda: list_page(http, token, kind), lambda page: len(page["data"]) == len(made))
    first = made[0]
    second = int(datetime.fromisoformat(first["created_at"]).timestamp())
    assert first["id"] in listed_ids(http, token, kind, **{"created[gte]": second, "created[lte]": second})
    assert first["id"] not in listed_ids(http, token, kind, **{"created[gt]": second})
    assert first["id"] not in listed_ids(http, token, kind, **{"created[lt]": second})
    assert listed_ids(http, token, kind, ending_before=first["id"]) == [made[1]["id"]]


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
    # Exact, case included, as Stripe's "case-sensitive filter on the customer's email field".
    assert list_page(http, token, "customers", email="Jenny@example.com").json()["data"] == []
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
    newest_first = [s["id"] for s in reversed(subscriptions)]
    # As Stripe's list: canceled subscriptions only when `status` asks for them (`canceled`, `ended`, `all`).
    assert listed() == newest_first[:2]
    assert listed(status="all") == newest_first
    assert listed(status="ended") == listed(status="canceled") == [subscriptions[0]["id"]]
    assert listed(customer_id=first["id"]) == [subscriptions[1]["id"]]
    assert listed(customer_id=first["id"], status="all") == [subscriptions[1]["id"], subscriptions[0]["id"]]
    assert listed(customer_id=second["id"], status="canceled") == []
    refused = list_page(http, token, "subscriptions", status="expired")
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "status"), refused.text


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
    [
        ("4242424242424242=1", None),  # a name holding one is not named
        ("customer_id=4242424242424242", "customer_id"),
        ("email=4242-4242-4242-4242", "email"),
        ("note=4242+4242+4242+4242", "note"),
        ("note=4242.4242.4242.4242", "note"),
    ],
)
def test_a_card_number_in_a_list_query_is_card_data_and_never_echoed(
    http: httpx.Client, kind: str, query: tuple[str, str | None]
) -> None:
    token = mint_token(new_workspace(), READ_ALL)
    response = http.get(f"{API}/{kind}?{query[0]}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error.get("param")) == ("raw_card_data", query[1])
    assert "4242" not in response.text


@pytest.mark.parametrize("kind", ["transactions", "customers", "subscriptions"])
def test_a_huge_unknown_parameter_is_not_echoed_whole(http: httpx.Client, kind: str) -> None:
    token = mint_token(new_workspace(), READ_ALL)
    # 10,000, under the HTTP parser's 16 KiB limit: a 50,000-character request line arriving in pieces was refused
    # by h11 before the app (400 invalid_http_request, connection closed unread), at times as a reset.
    response = http.get(f"{API}/{kind}?{'k' * 10_000}=1", headers={"Authorization": f"Bearer {token}"})
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
