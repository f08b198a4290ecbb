"""A subscription's creation killed after its provider made the subscription, before anything of it was recorded
here, and re-driven after the customer's default payment method changed: the re-drive must ask the provider for the
same subscription under the same key (the payment method of the first attempt), or Authorize.net makes a second ARB
subscription (its duplicate check compares the payment profile) and Stripe refuses the key with other parameters.

The embedded server is SIGKILLed at `after_subscription_provider_call`; its restart's recovery finds the provider
unavailable (503: the command stays open), the customer's default changes, and the running sweep re-drives it (as
RabbitMQ's redelivery of the same message body does in services mode).

Or the customer is deleted before the re-drive: what the provider made is recorded and canceled, and the creation
answers the customer's 404 (Authorize.net refuses that deletion while the ARB subscription bills the profile)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from payments_shared import ids

from tests.authnet_server.server import AuthnetTestServer, running_server
from tests.blackbox.server import API, embedded_server, mint_token, new_key, new_workspace
from tests.blackbox.test_customers import BILLING_PERMISSIONS
from tests.blackbox.test_fold_walk import stream_events
from tests.blackbox.test_webhooks_authnet import nonce, server_env
from tests.support.stripe_wire_server import SERVER_ERROR, StripeWireServer, running_stripe_wire

CRASH_POINT = "after_subscription_provider_call"
WAIT_S = 30.0
PLAN = {"amount": 1500, "currency": "usd", "interval": "month"}
# One provider failure answers the restart's recovery 503 (the creation stays open); the sweep re-drives it once
# idle this long, after the test changed the customer.
REDRIVE_LATER = {"PROVIDER_RETRY_ATTEMPTS": "1", "RECOVERY_MIN_AGE_S": "5", "RECOVERY_INTERVAL_S": "0.2"}


class Client:
    def __init__(self, http: httpx.Client, workspace: str) -> None:
        self.http, self.workspace = http, workspace

    def send(self, method: str, route: str, body: Any = None, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {mint_token(self.workspace, BILLING_PERMISSIONS)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.request(method, f"{API}/{route}", json=body, headers=headers)

    def made(self, method: str, route: str, body: Any, key: str | None = None) -> dict[str, Any]:
        response = self.send(method, route, body, key)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    def replayed(self, method: str, route: str, body: Any, key: str) -> httpx.Response:
        """The key's answer once its operation has finished: the sweep records the subscription a moment before it
        records the key's answer, and a repeat in between is API.md's 409 for a request still running."""
        deadline = time.monotonic() + WAIT_S
        while True:
            response = self.send(method, route, body, key)
            if response.status_code != 409 or time.monotonic() > deadline:
                return response
            time.sleep(0.2)

    def eventually(self, subscription_id: str, status: str = "active") -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while True:
            response = self.send("GET", f"subscriptions/{subscription_id}")
            if response.status_code == 200 and response.json()["status"] == status:
                found: dict[str, Any] = response.json()
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"{subscription_id} never became {status}: {response.status_code} {response.text}")
            time.sleep(0.2)


def crashed_creation(
    data_dir: Path, env: dict[str, str], workspace: str, customer_body: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """(the customer, the creation's key) once the first run died right after its provider made the subscription."""
    crash = {"PAYMENTS_FAULT_CRASH_ONCE": f"{CRASH_POINT}:{data_dir.parent / 'crashed-once'}"}
    with embedded_server(data_dir, **env, **crash) as first_run, httpx.Client(base_url=first_run.base_url) as http:
        client = Client(http, workspace)
        customer = client.made("POST", "customers", customer_body)
        key = new_key()
        with pytest.raises(httpx.TransportError):
            client.send("POST", "subscriptions", {**PLAN, "customer_id": customer["id"]}, key)
        first_run.processes[0].popen.wait(timeout=30)
        assert first_run.processes[0].popen.returncode == -9
    return customer, key


@contextlib.contextmanager
def restarted(data_dir: Path, env: dict[str, str], workspace: str) -> Iterator[Client]:
    with embedded_server(data_dir, **env) as second_run, httpx.Client(base_url=second_run.base_url) as http:
        yield Client(http, workspace)


def subscription_of(client: Client, key: str) -> str:
    """The id of the subscription the creation sent with `key` makes."""
    return ids.derived_id("sub", ids.command_id(client.workspace, key))


def redriven(client: Client, customer: dict[str, Any], key: str) -> dict[str, Any]:
    """The subscription the sweep's re-drive records; the client's retry with the key gets it replayed."""
    subscription = client.eventually(subscription_of(client, key))
    replay = client.replayed("POST", "subscriptions", {**PLAN, "customer_id": customer["id"]}, key)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true", replay.text
    assert replay.json()["id"] == subscription["id"]
    return subscription


def test_authnet_a_redriven_creation_makes_one_arb_subscription_on_the_first_payment_profile(tmp_path: Path) -> None:
    workspace = new_workspace()
    with running_server() as authnet:
        env = {**server_env(authnet), **REDRIVE_LATER}
        first = {"email": "arb@example.com", "provider": "authnet", "payment_method": accept_js()}
        customer, key = crashed_creation(tmp_path / "data", env, workspace, first)
        assert len(authnet.state.subscriptions) == 1  # ARB made it; nothing of it is recorded here
        authnet.fail_next("refuse500", only="ARBCreateSubscriptionRequest")  # the restart's recovery: 503
        with restarted(tmp_path / "data", env, workspace) as client:
            changed = client.made("PUT", f"customers/{customer['id']}", {"payment_method": accept_js()})
            assert changed["default_payment_method"] != customer["default_payment_method"]

            subscription = redriven(client, customer, key)
            assert arb_profiles(authnet) == {subscription["provider_reference"]: payment_profile(customer)}

            later = client.made("POST", "subscriptions", {**PLAN, "customer_id": customer["id"]}, new_key())
            assert arb_profiles(authnet)[later["provider_reference"]] == payment_profile(changed)


def accept_js() -> dict[str, str]:
    return {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": f"arb-{nonce()}"}


def payment_profile(customer: dict[str, Any]) -> str:
    """The customer's default payment profile id (its default_payment_method is `{profile}/{payment profile}`)."""
    return str(customer["default_payment_method"]).rpartition("/")[2]


def arb_profiles(authnet: AuthnetTestServer) -> dict[str, str]:
    """ARB subscription id → the payment profile it bills."""
    return {sub.subscription_id: sub.payment_profile_id for sub in authnet.state.subscriptions.values()}


STRIPE_KEY = "sk_test_subscription_redrive_0123456789"


@pytest.fixture
def wire() -> Iterator[StripeWireServer]:
    with running_stripe_wire(STRIPE_KEY) as server:
        yield server


def stripe_env(wire: StripeWireServer) -> dict[str, str]:
    return {
        "STRIPE_API_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": wire.base_url,
        "STRIPE_WEBHOOK_SECRET": "whsec_unused_here",
        "AUTHNET_SIGNATURE_KEY": "unused-here",
        "PAYMENTS_DEFAULT_PROVIDER": "stripe",
    }


def test_stripe_a_redriven_creation_sends_the_first_parameters_under_its_key(
    tmp_path: Path, wire: StripeWireServer
) -> None:
    workspace = new_workspace()
    env = {**stripe_env(wire), **REDRIVE_LATER}
    first = {"email": "sub@example.com", "payment_method": "pm_card_visa"}
    customer, key = crashed_creation(tmp_path / "data", env, workspace, first)
    assert len(wire.subscriptions) == 1  # Stripe made it; nothing of it is recorded here
    wire.fail_next(503, SERVER_ERROR)  # the restart's recovery: 503
    with restarted(tmp_path / "data", env, workspace) as client:
        changed = client.made("PUT", f"customers/{customer['id']}", {"payment_method": "pm_card_visa"})
        assert changed["default_payment_method"] != customer["default_payment_method"]

        subscription = redriven(client, customer, key)
        billed = {sub["id"]: sub["default_payment_method"] for sub in wire.subscriptions.values()}
        assert billed == {subscription["provider_reference"]: customer["default_payment_method"]}

        later = client.made("POST", "subscriptions", {**PLAN, "customer_id": customer["id"]}, new_key())
        assert (
            wire.subscriptions[later["provider_reference"]]["default_payment_method"]
            == changed["default_payment_method"]
        )


# A creation killed after its provider made the subscription; the customer is deleted before the re-drive (its
# deletion cannot cancel a subscription nothing here records). The re-drive asks the provider under the same key:
# what it made is recorded and canceled (the history stays), and the creation answers the customer's 404.


def test_stripe_a_creation_redriven_after_its_customer_was_deleted_records_and_cancels_what_stripe_made(
    tmp_path: Path, wire: StripeWireServer
) -> None:
    workspace = new_workspace()
    env = {**stripe_env(wire), **REDRIVE_LATER}
    first = {"email": "gone@example.com", "payment_method": "pm_card_visa"}
    customer, key = crashed_creation(tmp_path / "data", env, workspace, first)
    [made] = wire.subscriptions.values()  # nothing of it is recorded here
    wire.fail_next(503, SERVER_ERROR)  # the restart's recovery: 503
    with restarted(tmp_path / "data", env, workspace) as client:
        client.made("DELETE", f"customers/{customer['id']}", None)
        assert made["status"] == "canceled"  # Stripe cancels a deleted customer's subscriptions

        subscription = client.eventually(subscription_of(client, key), "canceled")
        assert_customer_gone(client.replayed("POST", "subscriptions", {**PLAN, "customer_id": customer["id"]}, key))

    assert subscription["provider_reference"] == made["id"]
    assert history(tmp_path / "data", subscription["id"]) == CREATED_AND_CANCELED


def test_authnet_refuses_to_delete_a_customer_an_unrecorded_arb_subscription_bills_until_the_redrive_records_it(
    tmp_path: Path,
) -> None:
    """Authorize.net refuses (E00106) to delete a profile an active ARB subscription bills: the deletion is a 409 and
    the customer stays, the re-drive records the subscription on it, and the next deletion cancels it first."""
    workspace = new_workspace()
    with running_server() as authnet:
        env = {**server_env(authnet), **REDRIVE_LATER}
        first = {"email": "arb-gone@example.com", "provider": "authnet", "payment_method": accept_js()}
        customer, key = crashed_creation(tmp_path / "data", env, workspace, first)
        authnet.fail_next("refuse500", only="ARBCreateSubscriptionRequest")  # the restart's recovery: 503
        with restarted(tmp_path / "data", env, workspace) as client:
            refused = client.send("DELETE", f"customers/{customer['id']}")
            assert (refused.status_code, refused.json()["error"]["type"]) == (409, "conflict"), refused.text
            assert client.send("GET", f"customers/{customer['id']}").status_code == 200

            subscription = redriven(client, customer, key)
            client.made("DELETE", f"customers/{customer['id']}", None)
            assert client.eventually(subscription["id"], "canceled")["canceled_at"] is not None

        assert [sub.status for sub in authnet.state.subscriptions.values()] == ["canceled"]
        assert customer["provider_reference"] not in authnet.state.profiles


def test_authnet_a_creation_whose_first_attempt_never_reached_arb_answers_404_once_the_customer_is_deleted(
    tmp_path: Path,
) -> None:
    """ARB asked again for a profile deleted since (E00040) made nothing: the customer's 404, nothing to undo."""
    with running_server() as authnet:
        unavailable_once = functools.partial(authnet.fail_next, "refuse500", only="ARBCreateSubscriptionRequest")
        body = {"email": "arb-never@example.com", "provider": "authnet", "payment_method": accept_js()}
        never_reached(tmp_path, server_env(authnet), body, unavailable_once)
        assert authnet.state.subscriptions == {}


def test_stripe_a_creation_whose_first_attempt_never_reached_stripe_answers_404_once_the_customer_is_deleted(
    tmp_path: Path, wire: StripeWireServer
) -> None:
    """Stripe asked again for a customer deleted since ("No such customer") made nothing: the customer's 404."""
    body = {"email": "never@example.com", "payment_method": "pm_card_visa"}
    never_reached(tmp_path, stripe_env(wire), body, functools.partial(wire.fail_next, 503, SERVER_ERROR))
    assert wire.subscriptions == {}


def never_reached(
    tmp_path: Path, env: dict[str, str], customer_body: dict[str, Any], unavailable_once: Callable[[], None]
) -> None:
    """The creation's first attempt recorded its request and got a 503 (the provider unavailable); the customer is
    deleted; the client's retry with the creation's key gets the customer's 404, and no subscription exists here."""
    workspace = new_workspace()
    with (
        embedded_server(tmp_path / "data", **env, PROVIDER_RETRY_ATTEMPTS="1") as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        client = Client(http, workspace)
        customer = client.made("POST", "customers", customer_body)
        subscribe, key = {**PLAN, "customer_id": customer["id"]}, new_key()
        unavailable_once()
        unavailable = client.send("POST", "subscriptions", subscribe, key)
        assert unavailable.status_code == 503, unavailable.text
        client.made("DELETE", f"customers/{customer['id']}", None)

        assert_customer_gone(client.send("POST", "subscriptions", subscribe, key))
        assert client.send("GET", f"subscriptions/{subscription_of(client, key)}").status_code == 404


CREATED_AND_CANCELED = ["SubscriptionCreated", "SubscriptionCancelRequested", "SubscriptionCanceled"]


def assert_customer_gone(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["param"] == "customer_id"


def history(data_dir: Path, subscription_id: str) -> list[str]:
    """The subscription stream's event types: its audit trail."""
    return [event.type for event in stream_events(data_dir, f"subscription-{subscription_id}")]
