"""The sandbox provider: API.md's table, one ledger entry per idempotency key that survives reopening, and its
fault injection (off by default)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from payments_shared.providers.port import OpaqueData, Outcome, PaymentRef, PaymentRequest
from payments_shared.providers.registry import build_providers, close_providers
from payments_shared.providers.sandbox import SandboxProvider, SandboxSettings
from payments_shared.settings import ProviderSettings
from payments_shared.sqlite_checkpoints import BACKSTOP_PAGES

from tests.support.loop_ticks import counting_ticks


@pytest.fixture
async def sandbox(tmp_path: Path):
    provider = SandboxProvider(tmp_path / "sandbox.db")
    yield provider
    await provider.close()


def pay(method: str | OpaqueData, key: str = "key-1", amount: int = 1099, capture: bool = True) -> PaymentRequest:
    return PaymentRequest(idempotency_key=key, amount=amount, currency="usd", payment_method=method, capture=capture)


@pytest.mark.parametrize(
    ("method", "outcome", "decline_code"),
    [
        ("pm_card_visa", Outcome.APPROVED, None),
        ("pm_card_mastercard", Outcome.APPROVED, None),
        ("pm_card_amex", Outcome.APPROVED, None),
        ("pm_card_chargeDeclined", Outcome.DECLINED, "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", Outcome.DECLINED, "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", Outcome.DECLINED, "expired_card"),
        ("pm_card_authenticationRequired", Outcome.REQUIRES_ACTION, None),
        ("pm_card_processingError", Outcome.PERMANENT, None),
    ],
)
async def test_the_test_cards_of_api_md(sandbox: SandboxProvider, method: str, outcome: Outcome, decline_code):
    result = await sandbox.pay(pay(method))
    assert result.outcome is outcome
    assert result.decline_code == decline_code
    assert "invalid_param" not in result.details
    if outcome is Outcome.REQUIRES_ACTION:
        assert result.next_action
    if outcome in (Outcome.APPROVED, Outcome.REQUIRES_ACTION):
        assert result.reference is not None and result.reference.startswith("sbx_")
        assert result.amount == 1099


@pytest.mark.parametrize("method", ["pm_card_unknown", "tok_visa", "", OpaqueData("COMMON.ACCEPT.INAPP.PAYMENT", "x")])
async def test_anything_else_is_a_refused_payment_method(sandbox: SandboxProvider, method) -> None:
    result = await sandbox.pay(pay(method))
    assert result.outcome is Outcome.PERMANENT
    assert result.details == {"invalid_param": "payment_method"}


async def test_deterministic_references_per_key(sandbox: SandboxProvider) -> None:
    first = await sandbox.pay(pay("pm_card_visa", key="a"))
    other = await sandbox.pay(pay("pm_card_visa", key="b"))
    assert first.reference != other.reference
    assert first.reference == (await sandbox.pay(pay("pm_card_visa", key="a"))).reference


async def test_one_ledger_entry_per_key_however_often_it_is_called(sandbox: SandboxProvider) -> None:
    results = await asyncio.gather(*(sandbox.pay(pay("pm_card_visa", key="same")) for _ in range(10)))
    assert len({result.reference for result in results}) == 1
    assert sandbox.ledger.count("same") == 1
    assert sandbox.ledger.count() == 1


async def test_a_repeated_key_returns_the_recorded_result_even_with_other_parameters(sandbox) -> None:
    first = await sandbox.pay(pay("pm_card_chargeDeclined", key="k"))
    again = await sandbox.pay(pay("pm_card_visa", key="k", amount=5))
    assert again == first
    assert sandbox.ledger.count() == 1


async def test_the_ledger_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger" / "sandbox.db"
    first = SandboxProvider(path)
    charged = await first.pay(pay("pm_card_visa", key="durable"))
    await first.close()
    reopened = SandboxProvider(path)
    try:
        again = await reopened.pay(pay("pm_card_visa", key="durable"))
        assert again == charged
        assert reopened.ledger.count() == 1
        [entry] = reopened.ledger.entries()
        assert (entry.idempotency_key, entry.operation, entry.amount, entry.captured) == ("durable", "pay", 1099, True)
    finally:
        await reopened.close()


async def test_concurrent_calls_are_group_committed_one_entry_per_key(sandbox: SandboxProvider) -> None:
    keys = [f"key-{n}" for n in range(40)]
    results = await asyncio.gather(*(sandbox.pay(pay("pm_card_visa", key)) for key in keys + keys))
    assert [result.reference for result in results[:40]] == [result.reference for result in results[40:]]
    assert sandbox.ledger.count() == 40


async def test_a_ledger_lock_held_elsewhere_waits_off_the_loop_then_records(sandbox: SandboxProvider) -> None:
    """Records commit on the loop's thread but never wait there: while another process (the other worker of the
    DATA_DIR) holds the ledger's write lock, they wait on a thread and the loop keeps running."""
    locker = sqlite3.connect(sandbox.ledger.path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        payments = [asyncio.create_task(sandbox.pay(pay("pm_card_visa", f"held-{n}"))) for n in range(3)]
        async with counting_ticks() as ticks:
            await asyncio.sleep(0.3)
        assert not any(payment.done() for payment in payments)
        assert ticks.count >= 10
        locker.execute("ROLLBACK")
        results = await asyncio.wait_for(asyncio.gather(*payments), 10)
        assert {result.outcome for result in results} == {Outcome.APPROVED}
        assert sandbox.ledger.count() == 3
    finally:
        locker.close()


async def test_the_ledger_is_checkpointed_off_the_loop(tmp_path: Path) -> None:
    """Its commits never copy the WAL into the database file (that fsyncs it and would stall the loop): the
    checkpointer thread does, soon after."""
    path = tmp_path / "sandbox.db"
    provider = SandboxProvider(path)
    try:
        empty_size = path.stat().st_size
        await asyncio.gather(*(provider.pay(pay("pm_card_visa", key=f"key-{n}")) for n in range(50)))
        async with asyncio.timeout(5):
            while path.stat().st_size == empty_size:  # noqa: ASYNC110 - another thread grows it
                await asyncio.sleep(0.05)
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM ledger").fetchone() == (50,)
        assert provider.ledger._loop_db.execute("PRAGMA wal_autocheckpoint").fetchone() == (BACKSTOP_PAGES,)
    finally:
        await provider.close()


async def test_capture_refund_void_of_a_sandbox_payment(sandbox: SandboxProvider) -> None:
    authorized = await sandbox.pay(pay("pm_card_visa", key="auth", capture=False))
    assert authorized.reference is not None
    payment = PaymentRef(authorized.reference, amount_authorized=1099, amount_captured=0, currency="usd")
    captured = await sandbox.capture(payment, 600, "cap")
    assert (captured.outcome, captured.amount) == (Outcome.APPROVED, 600)
    refunded = await sandbox.refund(payment, 100, "ref", "requested_by_customer")
    assert refunded.outcome is Outcome.APPROVED
    assert refunded.reference is not None and refunded.reference.startswith("sbxre_")
    assert await sandbox.refund(payment, 100, "ref", None) == refunded
    voided = await sandbox.void(payment, "void")
    assert voided.outcome is Outcome.APPROVED
    assert sorted(entry.operation for entry in sandbox.ledger.entries()) == ["capture", "pay", "refund", "void"]


async def test_capture_above_the_authorization_or_of_an_unknown_payment_is_refused(sandbox) -> None:
    authorized = await sandbox.pay(pay("pm_card_visa", key="auth", capture=False, amount=500))
    payment = PaymentRef(authorized.reference, amount_authorized=500, amount_captured=0, currency="usd")
    assert (await sandbox.capture(payment, 501, "too-much")).outcome is Outcome.PERMANENT
    unknown = PaymentRef("sbx_nope", amount_authorized=500, amount_captured=0, currency="usd")
    assert (await sandbox.capture(unknown, 100, "unknown")).outcome is Outcome.PERMANENT
    assert (await sandbox.refund(unknown, 100, "unknown-refund", None)).outcome is Outcome.PERMANENT


async def test_injected_failures_before_the_ledger_move_no_money(tmp_path: Path) -> None:
    provider = SandboxProvider(tmp_path / "s.db", SandboxSettings(failure_rate=1.0))
    try:
        result = await provider.pay(pay("pm_card_visa"))
        assert result.outcome is Outcome.RETRYABLE
        assert provider.ledger.count() == 0
    finally:
        await provider.close()


async def test_injected_failures_after_commit_lose_the_reply_but_not_the_charge(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    failing = SandboxProvider(path, SandboxSettings(failure_rate=1.0, failure_after_commit=True))
    assert (await failing.pay(pay("pm_card_visa", key="lost-reply"))).outcome is Outcome.RETRYABLE
    assert failing.ledger.count() == 1
    await failing.close()
    healthy = SandboxProvider(path)
    try:
        assert (await healthy.pay(pay("pm_card_visa", key="lost-reply"))).outcome is Outcome.APPROVED
        assert healthy.ledger.count() == 1
    finally:
        await healthy.close()


async def test_a_hanging_sandbox_never_answers(tmp_path: Path) -> None:
    provider = SandboxProvider(tmp_path / "s.db", SandboxSettings(hang=True))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(provider.pay(pay("pm_card_visa")), 0.05)
        assert provider.ledger.count() == 0
    finally:
        await provider.close()


def test_fault_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert SandboxSettings() == SandboxSettings(latency_ms=0, failure_rate=0.0, hang=False)
    monkeypatch.setenv("SANDBOX_LATENCY_MS", "5")
    monkeypatch.setenv("SANDBOX_FAILURE_RATE", "0.25")
    monkeypatch.setenv("SANDBOX_HANG", "true")
    monkeypatch.setenv("SANDBOX_DB_PATH", str(tmp_path / "x.db"))
    settings = SandboxSettings()
    assert (settings.latency_ms, settings.failure_rate, settings.hang) == (5, 0.25, True)
    assert settings.db_path == tmp_path / "x.db"


async def test_the_registry_always_has_the_sandbox_under_the_data_dir(tmp_path: Path) -> None:
    providers = build_providers(ProviderSettings(), tmp_path)
    try:
        assert providers["sandbox"].name == "sandbox"
        await providers["sandbox"].pay(pay("pm_card_visa"))
        assert (tmp_path / "sandbox.db").exists()
    finally:
        await close_providers(providers)
