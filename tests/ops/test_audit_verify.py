"""`payments-ops audit` and `verify` as real commands against a store filled through the API (embedded server),
and `verify` against a store with a deliberately corrupted stream."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

from payments_shared.eventstore.port import NewEvent
from payments_shared.eventstore.sqlite import SqliteEventStore

from tests.blackbox.server import Api, Server, new_key
from tests.blackbox.test_customers import Billing
from tests.ops.conftest import run_ops


def _refunded_charge(api: Api) -> str:
    charge = api.charge(key=new_key(), amount=2000)
    assert charge.status_code == 201, charge.text
    transaction_id: str = charge.json()["id"]
    refund = api.post("refund", {"transaction_id": transaction_id, "amount": 500}, key=new_key())
    assert refund.status_code == 200, refund.text
    return transaction_id


def test_audit_prints_the_timeline(api: Api, server: Server) -> None:
    transaction_id = _refunded_charge(api)
    ran = run_ops(server.data_dir, "audit", transaction_id)
    assert ran.status == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert transaction_id in lines[0] and api.workspace in lines[0]
    types = [line.split()[2] for line in lines[1:]]
    assert types == ["TransactionRequested", "PaymentCaptured", "RefundRequested", "RefundSucceeded"]
    assert "by blackbox-tester" in lines[1]
    assert "amount=2000" in lines[1] and "amount=500" in lines[3]
    assert "correlation=" in lines[1]


def test_audit_json_is_the_stored_stream(api: Api, server: Server) -> None:
    transaction_id = _refunded_charge(api)
    ran = run_ops(server.data_dir, "audit", transaction_id, "--json")
    assert ran.status == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert document["stream"] == f"transaction-{transaction_id}"
    events = document["events"]
    assert [e["stream_version"] for e in events] == [0, 1, 2, 3]
    stored = api.events(transaction_id).json()["data"]
    assert [e["position"] for e in events] == [e["position"] for e in stored]
    for mine, api_event in zip(events, stored, strict=True):
        assert mine["metadata"]["correlation_id"] == api_event["metadata"]["correlation_id"]
        assert mine["metadata"]["actor"] == "blackbox-tester"
        assert mine["metadata"]["workspace"] == api.workspace


def test_audit_of_unknown_or_malformed_ids(server: Server) -> None:
    assert run_ops(server.data_dir, "audit", "txn_doesnotexist").status == 1
    malformed = run_ops(server.data_dir, "audit", "nope_123")
    assert malformed.status == 2
    assert "txn_" in malformed.stderr


def test_audit_of_a_deleted_customer_shows_its_subscriptions_and_verify_passes(api: Api, server: Server) -> None:
    billing = Billing(api.http, api.workspace)
    customer = billing.customer(payment_method="pm_card_visa")
    subscribed = billing.subscribe(customer_id=customer["id"])
    assert subscribed.status_code == 201, subscribed.text
    assert billing.call("DELETE", f"customers/{customer['id']}").status_code == 200
    ran = run_ops(server.data_dir, "audit", customer["id"])
    assert ran.status == 0, ran.stderr
    types = [line.split()[2] for line in ran.stdout.splitlines()[1:]]
    assert types == ["CustomerCreated", "CustomerSubscriptionAdded", "CustomerDeleted"]
    assert f"subscription_id={subscribed.json()['id']}" in ran.stdout.splitlines()[2]
    verified = run_ops(server.data_dir, "verify")
    assert verified.status == 0 and "0 violation(s)" in verified.stderr, verified.stdout + verified.stderr


def test_verify_passes_on_history_written_by_the_services(api: Api, server: Server) -> None:
    _refunded_charge(api)
    authorized = api.authorize(key=new_key())
    assert authorized.status_code == 201
    assert api.post("void", {"transaction_id": authorized.json()["id"]}, key=new_key()).status_code == 200
    ran = run_ops(server.data_dir, "verify")
    assert ran.status == 0, ran.stdout + ran.stderr
    assert ran.stdout == ""
    assert "0 violation(s)" in ran.stderr


def test_audit_shows_why_a_payment_the_worker_refused_failed_and_verify_passes(api: Api, server: Server) -> None:
    refused = api.charge(key=new_key(), provider="authnet")  # the embedded server has no Authorize.net credentials
    assert refused.status_code == 400, refused.text
    transaction_id = refused.json()["error"]["transaction_id"]
    ran = run_ops(server.data_dir, "audit", transaction_id)
    assert ran.status == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["TransactionRequested", "PaymentFailed"]
    assert "provider=authnet" in lines[1]
    assert "failure_code=invalid_provider" in lines[2] and "error=provider_not_configured" in lines[2]
    verified = run_ops(server.data_dir, "verify")
    assert verified.status == 0 and "0 violation(s)" in verified.stderr, verified.stdout + verified.stderr


def test_verify_finds_corrupted_streams(api: Api, server: Server, tmp_path: Path) -> None:
    transaction_id = _refunded_charge(api)
    billing = Billing(api.http, workspace=api.workspace)
    customer = billing.customer(payment_method="pm_card_visa")
    subscription = billing.subscribe(customer_id=customer["id"]).json()
    assert billing.call("POST", f"subscriptions/{subscription['id']}/cancel", {}).status_code == 200
    deleted = billing.customer(email="gone@example.com")
    assert billing.call("DELETE", f"customers/{deleted['id']}").status_code == 200
    voided = api.authorize(key=new_key())
    voided_id = voided.json()["id"]
    assert api.post("void", {"transaction_id": voided_id}, key=new_key()).status_code == 200
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(server.data_dir / "events.db", copy / "events.db")
    for suffix in ("-wal", "-shm"):
        if (server.data_dir / f"events.db{suffix}").exists():
            shutil.copy(server.data_dir / f"events.db{suffix}", copy / f"events.db{suffix}")
    asyncio.run(_corrupt(copy / "events.db", api.workspace, transaction_id, voided_id))
    asyncio.run(_corrupt_billing(copy / "events.db", api.workspace, subscription["id"], deleted["id"]))

    ran = run_ops(copy, "verify")
    assert ran.status == 1
    violations = ran.stdout.splitlines()
    over_refund = [line for line in violations if transaction_id in line]
    assert any("refunds requested 2300 exceed captured 2000" in line for line in over_refund), violations
    assert any("RefundSucceeded: refunded 2300 exceeds captured 2000" in line for line in over_refund), violations
    after_void = [line for line in violations if voided_id in line]
    assert any("CaptureSucceeded: moves from voided to captured" in line for line in after_void), violations
    revived = [line for line in violations if subscription["id"] in line]
    assert revived == [
        f"subscription-{subscription['id']} v3 SubscriptionStatusChanged: "
        "moves from canceled to active, outside the state diagram"
    ]
    after_delete = [line for line in violations if deleted["id"] in line]
    assert after_delete == [f"customer-{deleted['id']} v2 CustomerUpdated: an event after the customer was deleted"]
    assert len(violations) == len(over_refund) + len(after_void) + 2  # nothing else in the store is flagged


def test_verify_names_an_event_it_cannot_read(api: Api, server: Server, tmp_path: Path) -> None:
    """An event whose data is not JSON (the file edited by hand) was a traceback: it is one line naming it."""
    transaction_id = _refunded_charge(api)
    copy = tmp_path / "copy"
    copy.mkdir()
    database = sqlite3.connect(server.data_dir / "events.db")
    try:
        database.execute("VACUUM INTO ?", (str(copy / "events.db"),))  # a consistent copy, WAL included
    finally:
        database.close()
    edited = sqlite3.connect(copy / "events.db")
    try:
        with edited:
            position = edited.execute(
                "SELECT position FROM events WHERE stream = ? ORDER BY version LIMIT 1",
                (f"transaction-{transaction_id}",),
            ).fetchone()[0]
            edited.execute("UPDATE events SET data = '{not json' WHERE position = ?", (position,))
    finally:
        edited.close()
    ran = run_ops(copy, "verify")
    assert ran.status == 1
    assert "Traceback" not in ran.stderr
    stream = f"transaction-{transaction_id}"
    said = ran.stderr.strip().splitlines()[-1]
    assert said.startswith(f"payments-ops verify: the event at position {position} (stream {stream!r}) is not readable")


def test_verify_finds_what_a_fold_would_pass_over_and_never_crashes(api: Api, server: Server, tmp_path: Path) -> None:
    """An event type no service knows (every fold skips it), a gap in a stream's versions, an amount that is not a
    whole number (it was a TypeError traceback) or below 1, and an occurred_at that is not a time (it made
    `export --since` a traceback): each a violation, one line each."""
    ids = [_refunded_charge(api) for _ in range(5)]
    copy = tmp_path / "copy"
    copy.mkdir()
    database = sqlite3.connect(server.data_dir / "events.db")
    try:
        database.execute("VACUUM INTO ?", (str(copy / "events.db"),))
    finally:
        database.close()
    workspace = json.dumps({"workspace": api.workspace})
    odd_time = json.dumps({"workspace": api.workspace, "occurred_at": "yesterday"})
    refund = {"command_id": "c", "refund_id": "re_x", "reason": None, "message_id": "m", "fingerprint": None}
    rows = [  # stream, version, type, data, metadata; each stream holds versions 0-3
        (ids[0], 4, "BogusHappened", {}, workspace),
        (ids[1], 9, "ProviderEventDiscrepancy", {"status": "x", "reason": "y", "provider_object": {}}, workspace),
        (ids[2], 4, "RefundRequested", {**refund, "amount": "5"}, workspace),
        (ids[3], 4, "RefundRequested", {**refund, "amount": -500}, workspace),
        (ids[4], 4, "ProviderEventDiscrepancy", {"status": "x", "reason": "y", "provider_object": {}}, odd_time),
    ]
    edited = sqlite3.connect(copy / "events.db")
    try:
        with edited:
            for number, (transaction_id, version, event_type, data, metadata) in enumerate(rows):
                edited.execute(
                    "INSERT INTO events (id, stream, version, type, data, metadata, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, '2030-01-01T00:00:00+00:00')",
                    (f"00000000-0000-4000-8000-{number:012d}", f"transaction-{transaction_id}", version, event_type,
                     json.dumps(data), metadata),
                )  # fmt: skip
    finally:
        edited.close()

    ran = run_ops(copy, "verify")

    assert ran.status == 1 and "Traceback" not in ran.stderr, ran.stderr
    found = {line.split(":", 1)[0].split(" ")[0].removeprefix("transaction-"): line for line in ran.stdout.splitlines()}
    assert "an event type its service does not know" in found[ids[0]]
    assert "version 9 where 4 was due" in found[ids[1]]
    assert "not an amount: refund re_x '5'" in found[ids[2]]
    assert "not an amount: refund re_x -500" in found[ids[3]]
    assert "occurred_at 'yesterday' is not a time" in found[ids[4]]
    assert len(ran.stdout.splitlines()) == 5, ran.stdout
    exported = run_ops(copy, "export", "--since", "2020-01-01")
    assert exported.status == 0 and "Traceback" not in exported.stderr, exported.stderr
    assert any(ids[4] in line and "yesterday" in line for line in exported.stdout.splitlines())


async def _corrupt(path: Path, workspace: str, refunded_id: str, voided_id: str) -> None:
    """Append what the services would never write: a refund beyond the captured amount, a capture after a void."""
    store = SqliteEventStore(path)
    metadata = {"workspace": workspace, "actor": "intruder"}
    try:
        stream = f"transaction-{refunded_id}"
        refund = {"command_id": "corrupt-refund", "refund_id": "re_corrupt", "amount": 1800, "reason": None}
        await store.append(
            stream,
            [
                NewEvent("RefundRequested", {**refund, "message_id": "m", "fingerprint": None}, metadata),
                NewEvent("RefundSucceeded", {"command_id": "corrupt-refund", "refund_id": "re_corrupt"}, metadata),
            ],
            3,
        )
        capture = {"command_id": "corrupt-capture", "amount": 5000, "message_id": "m", "fingerprint": None}
        await store.append(
            f"transaction-{voided_id}",
            [
                NewEvent("CaptureRequested", capture, metadata),
                NewEvent("CaptureSucceeded", {"command_id": "corrupt-capture", "amount": 5000}, metadata),
            ],
            3,
        )
    finally:
        await store.close()


async def _corrupt_billing(path: Path, workspace: str, subscription_id: str, customer_id: str) -> None:
    """A canceled subscription reported active again, and a change to a deleted customer."""
    store = SqliteEventStore(path)
    metadata = {"workspace": workspace, "actor": "intruder"}
    at = "2030-01-01T00:00:00.000000Z"
    try:
        revived = {"changes": {"status": "active"}, "updated_at": at, "provider_created": at}
        await store.append(
            f"subscription-{subscription_id}", [NewEvent("SubscriptionStatusChanged", revived, metadata)], 2
        )  # after SubscriptionCreated, SubscriptionCancelRequested, SubscriptionCanceled
        changed = {"changes": {"name": "Ghost"}, "updated_at": at}
        await store.append(f"customer-{customer_id}", [NewEvent("CustomerUpdated", changed, metadata)], 1)
    finally:
        await store.close()


def test_audit_shows_what_a_subscription_change_asked_and_why_it_failed(api: Api, server: Server) -> None:
    """A change is recorded as requested, then its outcome: the timeline says what was asked (a cancel at the
    period end or now) and why one failed (the error it answered), as it does for a transaction's."""
    billing = Billing(api.http, api.workspace)
    customer = billing.customer(payment_method="pm_card_visa")
    subscribed = billing.subscribe(customer_id=customer["id"])
    assert subscribed.status_code == 201, subscribed.text
    subscription_id = subscribed.json()["id"]
    refused = billing.call("PUT", f"subscriptions/{subscription_id}", {"price": "price_sandbox_unknown"})
    assert refused.status_code == 400, refused.text
    later = billing.call("POST", f"subscriptions/{subscription_id}/cancel", {"at_period_end": True})
    assert later.status_code == 200, later.text

    ran = run_ops(server.data_dir, "audit", subscription_id)

    assert ran.status == 0, ran.stderr
    lines = {line.split()[2]: line for line in ran.stdout.splitlines()[1:]}
    error = refused.json()["error"]
    assert f"error={error.get('code') or error['type']}" in lines["SubscriptionUpdateFailed"]
    assert "at_period_end=True" in lines["SubscriptionCancelRequested"]
