"""A subscription's cancel that its provider refuses or does not answer, over real HTTP against the Authorize.net
test server: the cancel's request is recorded first (serialised with the subscription's other changes), so each
failure must end it (refused: its error, the subscription unchanged and free for the next change) or leave it for
a retry (no answer: 503), and a customer's deletion must not end half-done without saying so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.authnet_server.server import AuthnetTestServer, running_server
from tests.blackbox.server import embedded_server, new_key, new_workspace
from tests.blackbox.test_subscription_redrive import PLAN, Client, accept_js
from tests.blackbox.test_webhooks_authnet import server_env
from tests.support.services import stream_event_types


@pytest.fixture
def authnet() -> Iterator[AuthnetTestServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def client(authnet: AuthnetTestServer, tmp_path: Path) -> Iterator[Client]:
    env = {**server_env(authnet), "PROVIDER_RETRY_ATTEMPTS": "1"}
    with embedded_server(tmp_path, **env) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield Client(http, new_workspace())


def subscribed(client: Client, count: int) -> tuple[dict[str, object], list[str]]:
    customer = client.made(
        "POST", "customers", {"email": "c@example.com", "provider": "authnet", "payment_method": accept_js()}
    )
    ids = [
        str(client.made("POST", "subscriptions", {**PLAN, "amount": 1500 + n, "customer_id": customer["id"]})["id"])
        for n in range(count)
    ]
    return customer, ids


def test_a_cancel_at_the_period_end_authorize_net_cannot_make_is_400_and_a_cancel_now_follows(
    client: Client, tmp_path: Path
) -> None:
    _, (subscription_id,) = subscribed(client, 1)

    refused = client.send("POST", f"subscriptions/{subscription_id}/cancel", {"at_period_end": True}, new_key())

    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "provider_unsupported")
    unchanged = client.send("GET", f"subscriptions/{subscription_id}").json()
    assert (unchanged["status"], unchanged["cancel_at_period_end"]) == ("active", False)
    now = client.send("POST", f"subscriptions/{subscription_id}/cancel", None, new_key())
    assert (now.status_code, now.json()["status"]) == (200, "canceled")
    assert stream_event_types(tmp_path, f"subscription-{subscription_id}") == [
        "SubscriptionCreated",
        "SubscriptionCancelRequested",
        "SubscriptionUpdateFailed",
        "SubscriptionCancelRequested",
        "SubscriptionCanceled",
    ]


def test_a_deletion_whose_cancel_gets_no_answer_is_503_and_its_retry_finishes_it(
    client: Client, authnet: AuthnetTestServer
) -> None:
    customer, (first, second) = subscribed(client, 2)
    authnet.fail_next("refuse500", only="ARBCancelSubscriptionRequest")  # the first cancel: no answer
    key = new_key()

    unanswered = client.send("DELETE", f"customers/{customer['id']}", None, key)

    assert unanswered.status_code == 503, unanswered.text
    assert client.send("GET", f"customers/{customer['id']}").status_code == 200
    assert client.send("GET", f"subscriptions/{second}").json()["status"] == "active"
    retried = client.send("DELETE", f"customers/{customer['id']}", None, key)
    assert retried.status_code == 200, retried.text
    assert client.send("GET", f"customers/{customer['id']}").status_code == 404
    assert {client.send("GET", f"subscriptions/{sub}").json()["status"] for sub in (first, second)} == {"canceled"}
    assert {sub.status for sub in authnet.state.subscriptions.values()} == {"canceled"}
