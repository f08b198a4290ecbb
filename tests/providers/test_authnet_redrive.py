"""A transactions worker that dies after Authorize.net charged an Accept.js token, and the worker that carries the
payment on: the restarted process's recovery (the stream never holds the token) and a redelivery to another
worker while Authorize.net's reports lag. The customer was charged once; the transaction must say so."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from payments_ops.resolve import resolve
from payments_shared import faults, ids
from payments_shared.broker.port import Message
from payments_shared.eventstore.port import EventStore
from payments_shared.messages import Command
from payments_shared.providers.authnet import provider as authnet_provider
from payments_shared.providers.authnet.messages import reference_for
from payments_shared.providers.authnet.provider import NEVER_MADE_AFTER, AuthorizeNetProvider
from payments_transactions.domain.resolution import Choice, Resolution
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker

from tests.authnet_server import fixture
from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer

authnet_server = fixture.authnet_server
DESCRIPTOR = "COMMON.ACCEPT.INAPP.PAYMENT"
WORKSPACE = "ws_an"


class SimulatedCrash(Exception):
    pass


def worker_process(store: EventStore, server: AuthnetTestServer, data_dir: Path) -> TransactionsWorker:
    """One worker process's composition: its own adapter, which knows nothing of earlier attempts."""
    adapter = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, server.url, timeout_s=fixture.CLIENT_TIMEOUT_S)
    settings = TransactionsSettings(
        data_dir=data_dir,
        payments_default_provider="authnet",
        authnet_api_login_id=LOGIN_ID,
        authnet_transaction_key=TRANSACTION_KEY,
        provider_timeout_s=fixture.CLIENT_TIMEOUT_S,
    )
    return TransactionsWorker(store, {"authnet": adapter}, settings)


def charge(key: str, token: str) -> Command:
    command_id = ids.command_id(WORKSPACE, key)
    body = {"amount": 1099, "currency": "usd", "payment_method": {"data_descriptor": DESCRIPTOR, "data_value": token}}
    return Command(
        type="charge",
        workspace=WORKSPACE,
        actor="user_1",
        command_id=command_id,
        idempotency_key=key,
        fingerprint=ids.fingerprint("POST /api/v1/payments/charge", body),
        payload={**body, "provider": "authnet", "transaction_id": ids.derived_id("txn", command_id)},
    )


def delivery(command: Command, redelivered: bool = False) -> Message:
    count = 2 if redelivered else 1
    return Message(body=command.model_dump(), message_id="msg-1", redelivered=redelivered, delivery_count=count)


async def status_of(worker: TransactionsWorker, command: Command) -> str:
    query = Command(
        type="get_transaction",
        workspace=WORKSPACE,
        actor="user_1",
        command_id=str(uuid.uuid4()),
        payload={"transaction_id": command.payload["transaction_id"]},
    )
    reply: Any = await worker.handle(Message(body=query.model_dump(), message_id=str(uuid.uuid4())))
    return str(reply["body"]["status"])


async def dies_after_the_charge(worker: TransactionsWorker, command: Command, server: AuthnetTestServer) -> None:
    def crash() -> None:
        raise SimulatedCrash

    with faults.hook("after_provider_call", crash), pytest.raises(SimulatedCrash):
        await worker.handle(delivery(command))
    assert len(server.state.payments_with_invoice(reference_for(command.command_id))) == 1  # the money moved


async def test_recovery_after_a_restart_finds_the_charge_its_token_cannot_repeat(store, authnet_server, tmp_path):
    command = charge("an-crash-recover", "tok-crash-recover")
    await dies_after_the_charge(worker_process(store, authnet_server, tmp_path), command, authnet_server)
    authnet_server.state.requests.clear()

    restarted = worker_process(store, authnet_server, tmp_path)
    assert await restarted.recover(min_age_s=0) == 1

    assert await status_of(restarted, command) == "captured"
    assert "createTransactionRequest" not in authnet_server.state.requests
    assert len(authnet_server.state.payments_with_invoice(reference_for(command.command_id))) == 1


async def test_a_redelivery_while_the_reports_lag_stays_pending_then_completes(store, authnet_server, tmp_path):
    command = charge("an-crash-lag", "tok-crash-lag")
    await dies_after_the_charge(worker_process(store, authnet_server, tmp_path), command, authnet_server)
    authnet_server.lag_reports(10)  # every look-up of this delivery misses the charge

    other = worker_process(store, authnet_server, tmp_path)
    lagging = await other.handle(delivery(command, redelivered=True))

    assert lagging["status"] == 503, lagging  # not a 502 and a failed transaction: the customer was charged
    assert await status_of(other, command) == "pending"
    authnet_server.lag_reports(-authnet_server.state.lagging_lists)  # the reports catch up
    completed = await other.handle(delivery(command, redelivered=True))
    assert completed["status"] == 201 and completed["body"]["status"] == "captured"
    assert len(authnet_server.state.payments_with_invoice(reference_for(command.command_id))) == 1


async def test_a_redelivery_past_the_bound_that_misses_the_charge_leaves_it_to_an_operator(
    store, authnet_server, tmp_path, monkeypatch
):
    """Authorize.net bounds no lag of its reports: a redelivery more than NEVER_MADE_AFTER after the payment was
    requested that still does not find the charge (its token spent: E00114) leaves the payment pending, unresolved
    for an operator; never failed. Once the reports list it, the recovery sweep finds it."""
    command = charge("an-crash-late", "tok-crash-late")
    await dies_after_the_charge(worker_process(store, authnet_server, tmp_path), command, authnet_server)
    later = NEVER_MADE_AFTER + timedelta(minutes=1)
    monkeypatch.setattr(authnet_provider, "_now", lambda: datetime.now(UTC) + later)
    authnet_server.lag_reports(10)  # every look-up of this delivery misses the charge

    other = worker_process(store, authnet_server, tmp_path)
    lagging = await other.handle(delivery(command, redelivered=True))

    assert lagging["status"] == 503, lagging  # not a 502 and a failed transaction: the customer was charged
    assert await status_of(other, command) == "pending"
    recorded = await store.read("transaction-" + command.payload["transaction_id"])
    failed = [event for event in recorded if event.type == "ProviderCallFailed"]
    assert failed[-1].data["unresolved"] == [reference_for(command.command_id)]
    authnet_server.lag_reports(-authnet_server.state.lagging_lists)  # the reports catch up
    assert await other.recover(min_age_s=0) == 1
    assert await status_of(other, command) == "captured"
    assert len(authnet_server.state.payments_with_invoice(reference_for(command.command_id))) == 1


async def test_a_payment_never_sent_is_failed_by_the_operator_not_by_the_guess(
    store, authnet_server, tmp_path, monkeypatch
):
    """The worker died before sending (the token was never kept): recovery past NEVER_MADE_AFTER finds nothing and
    leaves the payment unresolved; the operator, having checked the Merchant Interface, fails it as never made."""
    command = charge("an-crash-unsent", "tok-crash-unsent")

    def crash() -> None:
        raise SimulatedCrash

    with faults.hook("after_transaction_requested", crash), pytest.raises(SimulatedCrash):
        await worker_process(store, authnet_server, tmp_path).handle(delivery(command))
    later = NEVER_MADE_AFTER + timedelta(minutes=1)
    monkeypatch.setattr(authnet_provider, "_now", lambda: datetime.now(UTC) + later)
    restarted = worker_process(store, authnet_server, tmp_path)

    assert await restarted.recover(min_age_s=0) == 1
    assert await status_of(restarted, command) == "pending"
    transaction_id = command.payload["transaction_id"]
    await resolve(store, transaction_id, Resolution("ana", Choice.NOT_MADE, note="not in the Merchant Interface"))

    assert await status_of(restarted, command) == "failed"
    assert authnet_server.state.payments_with_invoice(reference_for(command.command_id)) == []
