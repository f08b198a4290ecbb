"""A payment re-driven a day later never adopts a PaymentIntent another transaction recorded: end to end through the
transactions worker (a real SQLite event store), against the Stripe wire-format server and its movable clock.

The client's 50 metadata keys leave no room for our tag, so the re-drive looks for its earlier attempt's intent by
listing the intents created since and matching what it sends. The client paid the same order under another
Idempotency-Key too: that transaction's intent matches as well, and is that transaction's, not this one's."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from payments_shared import ids
from payments_shared.eventstore.port import EventStore
from payments_shared.providers import stripe as stripe_adapter
from payments_shared.providers.stripe import StripeProvider
from payments_transactions import recovery
from payments_transactions.settings import TransactionsSettings
from payments_transactions.worker import TransactionsWorker

from tests.support.stripe_redrive_worker import A_DAY_AND_MORE, TIMEOUT_S, charge, events_of, transaction
from tests.support.stripe_wire_server import SERVER_ERROR, WIRE_API_KEY, StripeWireServer

API_KEY = WIRE_API_KEY
PAYMENTS_OPS = str(Path(sys.executable).parent / "payments-ops")


@pytest.fixture
async def worker(wire: StripeWireServer, store: EventStore, tmp_path: Path) -> AsyncIterator[TransactionsWorker]:
    adapter = StripeProvider(API_KEY, api_base=wire.base_url, timeout_s=TIMEOUT_S)
    settings = TransactionsSettings(
        data_dir=tmp_path, provider_timeout_s=TIMEOUT_S, provider_retry_attempts=1, in_flight_window_s=30
    )
    yield TransactionsWorker(store, {"stripe": adapter}, settings)
    await adapter.close()


@pytest.fixture
def next_day(wire: StripeWireServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Call to move Stripe's clock and ours 25 h on: Stripe has forgotten every key used so far."""

    def move() -> None:
        wire.advance(A_DAY_AND_MORE.total_seconds())
        monkeypatch.setattr(stripe_adapter, "_utc_now", lambda: datetime.now(UTC) + A_DAY_AND_MORE)

    yield move


async def test_a_redrive_whose_first_attempt_made_nothing_does_not_adopt_the_intent_another_transaction_recorded(
    wire: StripeWireServer, worker: TransactionsWorker, next_day: Any
) -> None:
    wire.fail_next(500, SERVER_ERROR)  # A's first attempt: nothing made at Stripe
    await charge(worker, "order-7-first")
    a_id = ids.derived_id("txn", ids.command_id("ws_a", "order-7-first"))
    assert (await transaction(worker, a_id))["status"] == "pending"
    second = await charge(worker, "order-7-again")  # the client pays the same order under another key
    assert second["status"] == 201, second
    pi_b = second["body"]["provider_reference"]
    next_day()

    assert await worker.recover(min_age_s=0) == 1  # A is re-driven: Stripe has forgotten its key

    a = await transaction(worker, a_id)
    assert a["status"] == "captured"
    assert a["provider_reference"] != pi_b  # one PaymentIntent counted by one transaction
    assert len(wire.payment_intents) == 2  # the two payments the client asked for, each made once
    assert {a["provider_reference"], pi_b} == set(wire.payment_intents)


async def test_a_redrive_adopts_its_own_lost_intent_when_the_other_match_is_another_transactions(
    wire: StripeWireServer, worker: TransactionsWorker, next_day: Any
) -> None:
    wire.stall_next(TIMEOUT_S * 4)  # A's first attempt: Stripe makes the intent, its answer is lost
    await charge(worker, "order-8-first")
    a_id = ids.derived_id("txn", ids.command_id("ws_a", "order-8-first"))
    assert (await transaction(worker, a_id))["status"] == "pending"
    [pi_a] = list(wire.payment_intents)
    second = await charge(worker, "order-8-again")
    assert second["status"] == 201, second
    pi_b = second["body"]["provider_reference"]
    next_day()

    assert await worker.recover(min_age_s=0) == 1

    a = await transaction(worker, a_id)
    assert (a["status"], a["provider_reference"]) == ("captured", pi_a)  # not unresolved: pi_b is B's
    assert set(wire.payment_intents) == {pi_a, pi_b}  # nothing new


async def test_two_open_payments_of_the_same_order_redriven_together_adopt_nothing_and_wait_for_an_operator(
    wire: StripeWireServer, worker: TransactionsWorker, next_day: Any
) -> None:
    wire.fail_next(500, SERVER_ERROR)  # A's first attempt: nothing made at Stripe
    await charge(worker, "order-9-first")
    wire.stall_next(TIMEOUT_S * 4)  # B's: Stripe makes the intent, its answer is lost
    await charge(worker, "order-9-again")
    a_id, b_id = (ids.derived_id("txn", ids.command_id("ws_a", key)) for key in ("order-9-first", "order-9-again"))
    [pi_b] = list(wire.payment_intents)
    next_day()

    assert await worker.recover(min_age_s=0) == 2  # a day-long outage ends: both re-driven at once

    for transaction_id in (a_id, b_id):  # each would have adopted pi_b: one intent counted twice
        assert (await transaction(worker, transaction_id))["status"] == "pending"
        failed = [e for e in await events_of(worker, transaction_id) if e["type"] == "ProviderCallFailed"]
        assert failed[-1]["data"]["unresolved"] == [pi_b]
    assert list(wire.payment_intents) == [pi_b]  # nothing moved twice


async def test_the_sweep_leaves_an_unresolved_payment_alone_until_its_retry_after_has_passed(
    wire: StripeWireServer, worker: TransactionsWorker, next_day: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire.fail_next(500, SERVER_ERROR)
    await charge(worker, "order-10-first")
    wire.stall_next(TIMEOUT_S * 4)
    await charge(worker, "order-10-again")
    next_day()
    assert await worker.recover(min_age_s=0) == 2  # unresolved: Retry-After 3600
    asked = len(wire.requests)
    sweep_age_s = 0.001  # the sweep's own minimum idle time: due at once but for the Retry-After

    assert [await worker.recover(min_age_s=sweep_age_s) for _ in range(3)] == [0, 0, 0]
    assert len(wire.requests) == asked  # Stripe is not asked again: only an operator can settle it

    an_hour_on = datetime.now(UTC) + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(recovery, "_utc_now", lambda: an_hour_on)
    assert await worker.recover(min_age_s=sweep_age_s) == 2
    assert len(wire.requests) > asked  # looked up again


# ---- the operator's decision: payments-ops resolve ----------------------------------------------------------------


async def payments_ops(tmp_path: Path, wire: StripeWireServer, *arguments: str) -> tuple[int, str, str]:
    """The real command in a subprocess (the wire server answers from this test's loop meanwhile)."""
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "EVENTSTORE_URI", "DATA_DIR")}
    env.update(DATA_DIR=str(tmp_path), STRIPE_API_KEY=API_KEY, STRIPE_API_BASE=wire.base_url)
    process = await asyncio.create_subprocess_exec(
        PAYMENTS_OPS, *arguments, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_an_operator_resolves_two_unresolved_payments_of_one_order_with_payments_ops(
    wire: StripeWireServer, worker: TransactionsWorker, next_day: Any, tmp_path: Path
) -> None:
    wire.fail_next(500, SERVER_ERROR)  # A's first attempt: nothing made at Stripe
    await charge(worker, "order-10-first")
    wire.stall_next(TIMEOUT_S * 4)  # B's: Stripe makes the intent, its answer is lost
    await charge(worker, "order-10-again")
    a_id, b_id = (ids.derived_id("txn", ids.command_id("ws_a", key)) for key in ("order-10-first", "order-10-again"))
    [pi_b] = list(wire.payment_intents)
    next_day()
    assert await worker.recover(min_age_s=0) == 2  # both unresolved, waiting for an operator

    # The operator looked at Stripe: pi_b is B's.
    status, out, err = await payments_ops(tmp_path, wire, "resolve", b_id, "--intent", pi_b, "--operator", "ana")
    assert (status, err) == (0, ""), err
    assert f"adopted {pi_b}" in out
    b = await transaction(worker, b_id)
    assert (b["status"], b["provider_reference"], b["amount_captured"]) == ("captured", pi_b, 1000)
    decided = [e for e in await events_of(worker, b_id) if e["type"] == "PaymentResolvedByOperator"]
    assert [(e["data"]["operator"], e["data"]["choice"], e["data"]["candidates"]) for e in decided] == [
        ("ana", "adopt", [pi_b])
    ]
    assert decided[0]["metadata"]["actor"] == "operator:ana"

    # The same decision again: nothing appended. Another one on B: refused.
    events_before = len(await events_of(worker, b_id))
    again = await payments_ops(tmp_path, wire, "resolve", b_id, "--intent", pi_b, "--operator", "ana")
    assert again[0] == 0 and "already resolved" in again[1]
    refused = await payments_ops(tmp_path, wire, "resolve", b_id, "--not-made", "--operator", "ana")
    assert refused[0] == 1 and "already_resolved" in refused[2]
    assert len(await events_of(worker, b_id)) == events_before

    # A cannot have B's intent; its attempts made nothing, so it fails (nothing is created on the operator's word).
    owned = await payments_ops(tmp_path, wire, "resolve", a_id, "--intent", pi_b, "--operator", "ana")
    assert owned[0] == 1 and "owned_by_another_transaction" in owned[2]
    assert (await transaction(worker, a_id))["status"] == "pending"
    status, out, err = await payments_ops(tmp_path, wire, "resolve", a_id, "--not-made", "--operator", "ana")
    assert (status, err) == (0, ""), err
    a = await transaction(worker, a_id)
    assert (a["status"], a["failure_code"], a["provider_reference"]) == ("failed", "payment_not_made", None)
    assert list(wire.payment_intents) == [pi_b]  # one intent, counted once
    assert await worker.recover(min_age_s=0) == 0  # nothing left open


async def test_payments_ops_resolve_refuses_a_transaction_that_is_not_unresolved(
    wire: StripeWireServer, worker: TransactionsWorker, tmp_path: Path
) -> None:
    paid = await charge(worker, "order-11")
    assert paid["status"] == 201
    status, _, err = await payments_ops(
        tmp_path, wire, "resolve", paid["body"]["id"], "--not-made", "--operator", "ana"
    )
    assert status == 1 and "not_unresolved" in err
    assert (await transaction(worker, paid["body"]["id"]))["status"] == "captured"
    missing = await payments_ops(tmp_path, wire, "resolve", "txn_missing", "--not-made", "--operator", "ana")
    assert missing[0] == 1 and "not_found" in missing[2]


async def test_a_client_retry_of_an_unresolved_payment_within_its_retry_after_answers_from_the_record(
    wire: StripeWireServer, worker: TransactionsWorker, next_day: Any
) -> None:
    wire.fail_next(500, SERVER_ERROR)
    await charge(worker, "order-12-first")
    wire.stall_next(TIMEOUT_S * 4)
    await charge(worker, "order-12-again")
    a_id = ids.derived_id("txn", ids.command_id("ws_a", "order-12-first"))
    next_day()
    assert await worker.recover(min_age_s=0) == 2  # unresolved: Retry-After 3600
    asked, events = len(wire.requests), len(await events_of(worker, a_id))

    retried = await charge(worker, "order-12-first")  # the client retries with its key

    assert retried["status"] == 503
    assert retried["body"]["error"]["code"] == "redrive_unresolved"  # as billing's: an operator decides
    assert 3500 <= int(retried["headers"]["Retry-After"]) <= 3600
    assert len(wire.requests) == asked  # Stripe is not asked again: it would answer the same
    assert len(await events_of(worker, a_id)) == events  # and no ProviderCallFailed more in the stream
