"""Crash safety in embedded mode: the process is SIGKILLed right after `…Requested` is appended and before the
provider is called; a restart on the same DATA_DIR completes the transaction once (one sandbox ledger entry),
and the client's retry with the same Idempotency-Key gets it. Likewise a subscription cancel killed after the
provider canceled and before its outcome is recorded, and a charge, authorization, capture, refund or void on Stripe
or Authorize.net killed after the provider answered. Also: past RPC_TIMEOUT_S a charge answers 202 `pending` and
is still carried out."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from payments_shared import ids

from tests.authnet_server.server import running_server
from tests.blackbox.server import API, Api, embedded_server, new_key, new_workspace
from tests.blackbox.test_customers import Billing
from tests.blackbox.test_webhooks_authnet import nonce
from tests.blackbox.test_webhooks_authnet import server_env as authnet_server_env
from tests.providers.test_crash_windows import Peer, authnet_peer, stripe_peer
from tests.support.services import ledger, ledger_operations, stream_event_types, wait_until
from tests.support.stripe_wire_server import WIRE_API_KEY, running_stripe_wire

WAIT_S = 30.0


def ledger_rows(data_dir: Path) -> list[tuple[str, str]]:
    return [(row.idempotency_key, row.operation) for row in ledger(data_dir)]


def wait_for_status(api: Api, transaction_id: str, wanted: str) -> dict[str, object]:
    deadline = time.monotonic() + WAIT_S
    while True:
        response = api.get(transaction_id)
        if response.status_code == 200 and response.json()["status"] == wanted:
            body: dict[str, object] = response.json()
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"{transaction_id} never reached {wanted}: {response.status_code} {response.text}")
        time.sleep(0.1)


def test_killed_after_requested_then_restarted_completes_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    marker = tmp_path / "crashed-once"
    crash = f"after_transaction_requested:{marker}"
    workspace, key = new_workspace(), new_key()
    charge = {"amount": 4200, "currency": "usd", "payment_method": "pm_card_visa"}

    with contextlib.ExitStack() as stack, embedded_server(data_dir, PAYMENTS_FAULT_CRASH_ONCE=crash) as first_run:
        client = stack.enter_context(httpx.Client(base_url=first_run.base_url, timeout=30))
        api = Api(client, workspace)
        with pytest.raises(httpx.TransportError):
            api.post("charge", charge, key=key)  # the process dies while handling it
        first_run.processes[0].popen.wait(timeout=30)
        assert first_run.processes[0].popen.returncode == -9
    assert marker.exists()
    assert ledger_rows(data_dir) == []

    command_id = ids.command_id(workspace, key)
    transaction_id = ids.derived_id("txn", command_id)
    with contextlib.ExitStack() as stack, embedded_server(data_dir, PAYMENTS_FAULT_CRASH_ONCE=crash) as second_run:
        client = stack.enter_context(httpx.Client(base_url=second_run.base_url, timeout=30))
        api = Api(client, workspace)
        recovered = wait_for_status(api, transaction_id, "captured")
        assert recovered["amount_captured"] == 4200
        retry = api.post("charge", charge, key=key)
        assert retry.status_code == 201, retry.text
        assert retry.json()["id"] == transaction_id
        assert retry.json()["status"] == "captured"
        assert retry.headers["Idempotent-Replayed"] == "true"
    assert ledger_rows(data_dir) == [(command_id, "pay")]


def test_a_cancel_killed_after_the_providers_cancel_is_finished_once_by_the_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    crash = f"after_subscription_cancel_call:{tmp_path / 'crashed-once'}"
    key = new_key()

    with contextlib.ExitStack() as stack, embedded_server(data_dir, PAYMENTS_FAULT_CRASH_ONCE=crash) as first_run:
        billing = Billing(stack.enter_context(httpx.Client(base_url=first_run.base_url, timeout=30)))
        owner = billing.customer(payment_method="pm_card_visa")
        subscribed = billing.subscribe(customer_id=owner["id"])
        assert subscribed.status_code == 201, subscribed.text
        subscription_id = subscribed.json()["id"]
        with pytest.raises(httpx.TransportError):
            billing.call("POST", f"subscriptions/{subscription_id}/cancel", {}, key)  # the process dies
        assert first_run.processes[0].popen.wait(timeout=30) == -9
    stream = f"subscription-{subscription_id}"
    # The provider canceled; the cancel was recorded as requested before that, so it is visibly open.
    assert ledger_operations(data_dir, "cancel_subscription") == 1
    assert stream_event_types(data_dir, stream) == ["SubscriptionCreated", "SubscriptionCancelRequested"]

    with contextlib.ExitStack() as stack, embedded_server(data_dir) as second_run:
        billing.http = stack.enter_context(httpx.Client(base_url=second_run.base_url, timeout=30))
        wait_until(
            lambda: billing.call("GET", f"subscriptions/{subscription_id}").json()["status"] == "canceled",
            WAIT_S,
            "the restart's recovery to finish the cancel",
        )
        retried = billing.call("POST", f"subscriptions/{subscription_id}/cancel", {}, key)
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "canceled"
    assert stream_event_types(data_dir, stream) == [
        "SubscriptionCreated",
        "SubscriptionCancelRequested",
        "SubscriptionCanceled",
    ]
    assert ledger_operations(data_dir, "cancel_subscription") == 1


def test_slow_worker_gives_202_pending_and_the_charge_completes(tmp_path: Path) -> None:
    with (
        contextlib.ExitStack() as stack,
        embedded_server(tmp_path / "data", RPC_TIMEOUT_S="0.3", SANDBOX_LATENCY_MS="1500") as server,
    ):
        client = stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30))
        api = Api(client)
        key = new_key()
        response = api.post("charge", {"amount": 321, "currency": "GBP", "payment_method": "pm_card_visa"}, key=key)
        assert response.status_code == 202, response.text
        pending = response.json()
        assert pending["status"] == "pending"
        assert pending["id"] == ids.derived_id("txn", ids.command_id(api.workspace, key))
        assert (pending["amount"], pending["currency"], pending["amount_captured"]) == (321, "gbp", 0)
        done = wait_for_status(api, pending["id"], "captured")
        assert done["amount_captured"] == 321


def test_a_slow_refund_without_a_key_is_not_invited_to_be_sent_again(tmp_path: Path) -> None:
    # Past RPC_TIMEOUT_S a refund answers 503 `processing` and still completes. With a key, a retry gets its result;
    # without one, a retry is a second refund: that answer must say so, and carry no Retry-After.
    with (
        contextlib.ExitStack() as stack,
        embedded_server(tmp_path / "data", RPC_TIMEOUT_S="0.3", SANDBOX_LATENCY_MS="1500") as server,
    ):
        api = Api(stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30)))
        charged = api.charge(key=new_key(), amount=1000)
        assert charged.status_code == 202, charged.text
        transaction_id = charged.json()["id"]
        wait_for_status(api, transaction_id, "captured")

        keyless = api.post("refund", {"transaction_id": transaction_id, "amount": 100})
        keyed = api.post("refund", {"transaction_id": transaction_id, "amount": 200}, key=new_key())
        for answer in (keyless, keyed):
            assert (answer.status_code, answer.json()["error"]["code"]) == (503, "processing"), answer.text
        assert "Retry-After" not in keyless.headers
        assert "no Idempotency-Key" in keyless.json()["error"]["message"]
        assert "retry with the same Idempotency-Key" in keyed.json()["error"]["message"]
        assert keyed.headers["Retry-After"] == "2"
        assert wait_for_status(api, transaction_id, "partially_refunded")["amount_refunded"] in (100, 200, 300)
        deadline = time.monotonic() + WAIT_S
        while api.get(transaction_id).json()["amount_refunded"] != 300:  # both complete, each once
            assert time.monotonic() < deadline, api.get(transaction_id).text
            time.sleep(0.1)


def test_rate_limits_are_per_workspace_and_per_bucket(tmp_path: Path) -> None:
    with (
        contextlib.ExitStack() as stack,
        embedded_server(tmp_path / "data", RATE_LIMIT_WRITE="3/minute", RATE_LIMIT_READ="4/minute") as server,
    ):
        http = stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30))
        api = Api(http)
        writes = [api.charge().status_code for _ in range(4)]
        assert writes == [201, 201, 201, 429]
        limited = api.charge()
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert int(limited.headers["Retry-After"]) >= 1
        reads = [api.http.get(f"{API}/transactions/txn_x", headers=api.headers()).status_code for _ in range(5)]
        assert reads == [404, 404, 404, 404, 429]
        assert Api(http).charge().status_code == 201  # another workspace has its own budget


# ---- a capture, refund or void SIGKILLed after its provider answered, on Stripe and Authorize.net ---------------

FOLLOW_UP_STATUS = {"capture": "captured", "refund": "partially_refunded", "void": "voided"}
FOLLOW_UP_OUTCOME = {"capture": "CaptureSucceeded", "refund": "RefundSucceeded", "void": "VoidSucceeded"}
PAID = 1000
PART = 400  # of a capture or refund: a second one would still be allowed by the provider, and show


@contextlib.contextmanager
def provider_peer(provider: str) -> Iterator[tuple[Peer, dict[str, str]]]:
    """The provider's test peer (the Stripe wire-format server, the Authorize.net test server) and the embedded
    server's settings for it."""
    if provider == "stripe":
        with running_stripe_wire(WIRE_API_KEY) as wire:
            yield (
                stripe_peer(wire),
                {
                    "PAYMENTS_DEFAULT_PROVIDER": "stripe",
                    "STRIPE_API_KEY": WIRE_API_KEY,
                    "STRIPE_API_BASE": wire.base_url,
                    "STRIPE_WEBHOOK_SECRET": "whsec_unused_here",
                    "AUTHNET_SIGNATURE_KEY": "unused-here",
                },
            )
        return
    with running_server(stall_s=12.0) as authnet:
        yield authnet_peer(authnet), {**authnet_server_env(authnet), "PAYMENTS_DEFAULT_PROVIDER": "authnet"}


def payment_method(provider: str) -> Any:
    if provider == "stripe":
        return "pm_card_visa"
    return {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": f"tok-{nonce()}"}


@pytest.mark.parametrize("kind", ["capture", "refund", "void"])
@pytest.mark.parametrize("provider", ["stripe", "authnet"])
def test_a_follow_up_killed_after_its_provider_answered_is_recorded_once_by_the_restart(
    tmp_path: Path, provider: str, kind: str
) -> None:
    """SIGKILL between the provider's answer and its outcome's append (`after_provider_call`); the restart's recovery
    asks the provider again under the same key (Stripe replays; Authorize.net's refund is looked up by its invoice
    number, a second capture or void is answered as already done), records the outcome once, and the client's retry
    with its key gets it. The provider's own records hold the operation once."""
    data_dir = tmp_path / "data"
    workspace, key = new_workspace(), new_key()
    env = {"IN_FLIGHT_WINDOW_S": "1", "PROVIDER_TIMEOUT_S": "3"}
    body: dict[str, Any] = {}
    with provider_peer(provider) as (peer, provider_env):
        with contextlib.ExitStack() as stack, embedded_server(data_dir, **provider_env, **env) as setup:
            api = Api(stack.enter_context(httpx.Client(base_url=setup.base_url, timeout=30)), workspace)
            route = "charge" if kind == "refund" else "authorize"
            paid = api.post(route, {"amount": PAID, "currency": "usd", "payment_method": payment_method(provider)})
            assert paid.status_code == 201, paid.text
            payment = paid.json()
        peer.settle()  # Authorize.net refunds only a settled charge
        body = {"transaction_id": payment["id"], **({"amount": PART} if kind != "void" else {})}

        killed_after_the_provider_answered(tmp_path, {**provider_env, **env}, workspace, kind, body, key)
        assert peer.made(kind, payment) == 1
        transaction_stream = f"transaction-{payment['id']}"
        assert FOLLOW_UP_OUTCOME[kind] not in stream_event_types(data_dir, transaction_stream)

        with contextlib.ExitStack() as stack, embedded_server(data_dir, **provider_env, **env) as restarted:
            api = Api(stack.enter_context(httpx.Client(base_url=restarted.base_url, timeout=30)), workspace)
            recovered = wait_for_status(api, payment["id"], FOLLOW_UP_STATUS[kind])
            retried = retried_until_answered(api, kind, body, key)
            assert retried.status_code == 200, retried.text
            assert retried.json() == recovered
        assert peer.made(kind, payment) == 1
    types = stream_event_types(data_dir, transaction_stream)
    assert types.count(FOLLOW_UP_OUTCOME[kind]) == 1
    assert "ProviderCallFailed" not in types
    if kind == "capture":
        assert recovered["amount_captured"] == PART
    if kind == "refund":
        assert recovered["amount_refunded"] == PART


def killed_after_the_provider_answered(
    tmp_path: Path, env: dict[str, str], workspace: str, route: str, body: dict[str, Any], key: str
) -> None:
    """The request sent to the embedded server on `tmp_path / "data"`, which SIGKILLs itself once the provider
    has answered (`after_provider_call`), before the outcome is recorded."""
    crash = f"after_provider_call:{tmp_path / 'crashed-once'}"
    with (
        contextlib.ExitStack() as stack,
        embedded_server(tmp_path / "data", **env, PAYMENTS_FAULT_CRASH_ONCE=crash) as crashing,
    ):
        api = Api(stack.enter_context(httpx.Client(base_url=crashing.base_url, timeout=30)), workspace)
        with pytest.raises(httpx.TransportError):
            api.post(route, body, key=key)  # the process dies with the provider's answer
        assert crashing.processes[0].popen.wait(timeout=30) == -9


def retried_until_answered(api: Api, route: str, body: dict[str, Any], key: str) -> httpx.Response:
    """The client's retry with its key: 409 while the dead attempt's claim of the key is in its in-flight window."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = api.post(route, body, key=key)
        if response.status_code != 409 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.mark.parametrize("kind", ["capture", "refund", "void"])
def test_a_follow_up_finished_by_the_restart_is_replayed_to_its_retry_at_once(tmp_path: Path, kind: str) -> None:
    """SIGKILL right after the follow-up's `…Requested`; the restart's recovery finishes it. The dead attempt's claim
    of the key is still within its in-flight window (30 s), but nothing runs any more: the retry with the key gets
    the outcome at once, as a replay, not 409 "still being processed" until the window ends."""
    data_dir = tmp_path / "data"
    workspace, key = new_workspace(), new_key()
    crash = f"after_{kind}_requested:{tmp_path / 'crashed-once'}"
    with contextlib.ExitStack() as stack, embedded_server(data_dir, PAYMENTS_FAULT_CRASH_ONCE=crash) as first_run:
        api = Api(stack.enter_context(httpx.Client(base_url=first_run.base_url, timeout=30)), workspace)
        route = "charge" if kind == "refund" else "authorize"
        paid = api.post(route, {"amount": PAID, "currency": "usd", "payment_method": "pm_card_visa"})
        assert paid.status_code == 201, paid.text
        body = {"transaction_id": paid.json()["id"], **({"amount": PART} if kind != "void" else {})}
        with pytest.raises(httpx.TransportError):
            api.post(kind, body, key=key)  # the process dies with the request recorded
        assert first_run.processes[0].popen.wait(timeout=30) == -9
    with contextlib.ExitStack() as stack, embedded_server(data_dir, PAYMENTS_FAULT_CRASH_ONCE=crash) as second_run:
        api = Api(stack.enter_context(httpx.Client(base_url=second_run.base_url, timeout=30)), workspace)
        recovered = wait_for_status(api, str(body["transaction_id"]), FOLLOW_UP_STATUS[kind])
        retried = api.post(kind, body, key=key)
        assert retried.status_code == 200, retried.text
        assert retried.headers["Idempotent-Replayed"] == "true"
        assert retried.json() == recovered
    assert ledger_operations(data_dir, kind) == 1  # the sandbox acted once


@pytest.mark.parametrize("route", ["charge", "authorize"])
@pytest.mark.parametrize("provider", ["stripe", "authnet"])
def test_a_payment_killed_after_its_provider_answered_is_recorded_once_by_the_restart(
    tmp_path: Path, provider: str, route: str
) -> None:
    """SIGKILL between the provider's answer and the payment's outcome (`after_provider_call`); the restart's recovery
    asks again under the same key (Stripe replays; Authorize.net's payment, whose Accept.js token is never stored, is
    found by its invoice number), records it once, and the client's retry with its key gets it."""
    data_dir = tmp_path / "data"
    workspace, key = new_workspace(), new_key()
    command_id = ids.command_id(workspace, key)
    transaction_id = ids.derived_id("txn", command_id)
    body = {"amount": PAID, "currency": "usd", "payment_method": payment_method(provider)}
    env = {"IN_FLIGHT_WINDOW_S": "1", "PROVIDER_TIMEOUT_S": "3"}
    wanted = "captured" if route == "charge" else "authorized"
    with provider_peer(provider) as (peer, provider_env):
        killed_after_the_provider_answered(tmp_path, {**provider_env, **env}, workspace, route, body, key)
        assert peer.charged(command_id) == (1, 1)
        stream = f"transaction-{transaction_id}"
        assert stream_event_types(data_dir, stream) == ["TransactionRequested"]

        with contextlib.ExitStack() as stack, embedded_server(data_dir, **provider_env, **env) as restarted:
            api = Api(stack.enter_context(httpx.Client(base_url=restarted.base_url, timeout=30)), workspace)
            recovered = wait_for_status(api, transaction_id, wanted)
            retried = retried_until_answered(api, route, body, key)
            assert (retried.status_code, retried.headers.get("Idempotent-Replayed")) == (201, "true"), retried.text
            assert retried.json() == recovered
        assert peer.charged(command_id) == (1, 1)
    types = stream_event_types(data_dir, stream)
    assert types.count("PaymentCaptured" if route == "charge" else "PaymentAuthorized") == 1
    assert "ProviderCallFailed" not in types
