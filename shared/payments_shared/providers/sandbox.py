"""The sandbox provider of API.md: deterministic, no network, with Stripe's test payment-method names.

It keeps a durable ledger (SQLite, `$DATA_DIR/sandbox.db` by default) keyed by idempotency key: a repeated call
with a key returns the recorded result and moves no money again, and tests count the ledger to prove one
provider call per key. Fault injection for tests and benchmarks (`SandboxSettings`) is off unless configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from payments_shared import ids, jsoncodec
from payments_shared.per_turn import TurnBatches
from payments_shared.providers.port import OpaqueData, Outcome, PaymentRef, PaymentRequest, ProviderResult
from payments_shared.sqlite_checkpoints import BACKSTOP_PAGES, Checkpointer
from payments_shared.sqlite_setup import set_up

logger = logging.getLogger(__name__)

NAME: Final = "sandbox"


@dataclass(frozen=True)
class TestCard:
    outcome: Outcome
    brand: str
    last4: str
    decline_code: str | None = None
    message: str | None = None


APPROVED_CARDS: Final = {
    "pm_card_visa": TestCard(Outcome.APPROVED, "visa", "4242"),
    "pm_card_mastercard": TestCard(Outcome.APPROVED, "mastercard", "4444"),
    "pm_card_amex": TestCard(Outcome.APPROVED, "amex", "8431"),
}
TEST_CARDS: Final = {
    **APPROVED_CARDS,
    "pm_card_chargeDeclined": TestCard(Outcome.DECLINED, "visa", "0002", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        Outcome.DECLINED, "visa", "9995", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard(
        Outcome.DECLINED, "visa", "0069", "expired_card", "Your card has expired."
    ),
    "pm_card_authenticationRequired": TestCard(Outcome.REQUIRES_ACTION, "visa", "3184"),
    "pm_card_processingError": TestCard(
        Outcome.PERMANENT, "visa", "0119", message="An error occurred while processing your card."
    ),
}


class SandboxSettings(BaseSettings):
    """`SANDBOX_*` variables. Every fault is off by default."""

    model_config = SettingsConfigDict(env_prefix="sandbox_", case_sensitive=False, extra="ignore")

    db_path: Path | None = None  # default: $DATA_DIR/sandbox.db
    latency_ms: int = Field(default=0, ge=0)  # added to every call
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # share of calls answered RETRYABLE
    failure_after_commit: bool = False  # an injected failure happens after the ledger write (money moved, reply lost)
    hang: bool = False  # every call waits forever (the caller's timeout must end it)
    fault_seed: int | None = None  # makes the injected failures reproducible
    # A JSON object file ({"failure_rate": 1.0, "latency_ms": 0, "hang": false, …}) read on every call while it
    # exists: its fields override the ones above, so a test can start and end an outage in a running process.
    faults_file: Path | None = None


def reference_for(prefix: str, idempotency_key: str) -> str:
    return f"{prefix}_{ids.letters(hashlib.sha256(idempotency_key.encode()).digest()[:12])}"


@dataclass(frozen=True)
class LedgerEntry:
    idempotency_key: str
    operation: str  # pay | capture | refund | void
    reference: str | None
    payment_reference: str | None
    amount: int
    outcome: str
    captured: bool


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    idempotency_key TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    reference TEXT,
    payment_reference TEXT,
    amount INTEGER NOT NULL,
    currency TEXT,
    captured INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS ledger_reference ON ledger (reference);
CREATE INDEX IF NOT EXISTS ledger_cancels ON ledger (payment_reference) WHERE operation = 'cancel_subscription';
CREATE INDEX IF NOT EXISTS ledger_deletions ON ledger (payment_reference) WHERE operation = 'delete_customer';
"""


def _result_json(result: ProviderResult) -> str:
    return jsoncodec.dumps(
        {
            "outcome": result.outcome.value,
            "reference": result.reference,
            "decline_code": result.decline_code,
            "message": result.message,
            "next_action": dict(result.next_action) if result.next_action is not None else None,
            "amount": result.amount,
            "details": dict(result.details),
        }
    )


def _result_from_json(text: str) -> ProviderResult:
    data = jsoncodec.loads(text)
    return ProviderResult(
        outcome=Outcome(data["outcome"]),
        reference=data["reference"],
        decline_code=data["decline_code"],
        message=data["message"],
        next_action=data["next_action"],
        amount=data["amount"],
        details=data["details"],
    )


@dataclass
class _QueuedRecord:
    """A `record` call waiting for the commit that carries it."""

    values: tuple[Any, ...]
    future: asyncio.Future[str]  # the result the key holds once committed


_INSERT = (
    "INSERT OR IGNORE INTO ledger (idempotency_key, operation, reference, payment_reference, amount,"
    " currency, captured, outcome, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_RETURNING = f"{_INSERT} RETURNING result"
_RESULT_OF_KEY = "SELECT result FROM ledger WHERE idempotency_key = ?"


class SandboxLedger:
    """The sandbox's own record of every call, one row per idempotency key (first write wins).

    Writes are group-committed: the `record` calls of one turn of the event loop are committed in one
    transaction at the end of the turn, on the loop's thread, so each call returns only once its row is committed
    without a thread hand-off per call. When another process holds the write lock (the ledger file is shared by
    the workers of one DATA_DIR), the batch waits for it on a thread instead of on the loop. Reads use their own
    connection and never wait for a commit. The WAL is copied into the file by a checkpointer thread
    (payments_shared.sqlite_checkpoints), never by a commit on the loop.

    synchronous=NORMAL (WAL), one fsync fewer per charge: a committed row survives the process being killed,
    which the crash tests and "one ledger row per key" rely on, but a power cut may forget the last rows. The
    sandbox stands in for a provider's own records; the platform's, the event store, stay synchronous=FULL."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # the waiting write connection: held by the thread committing a batch
        self._db = _connect(path, timeout_s=30)
        set_up(self._db, lambda db: db.executescript(_SCHEMA))
        self._loop_db = _connect(path, timeout_s=0)  # never waits: a held lock sends the batch to `_db`
        self._checkpointer = Checkpointer(path, busy_timeout_ms=30_000)  # not the loop's commits (see the module)
        self._turns: TurnBatches[_QueuedRecord] = TurnBatches(self._commit_turn)
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)

    def lookup(self, idempotency_key: str) -> ProviderResult | None:
        with self._read_lock:
            row = self._reader.execute(_RESULT_OF_KEY, (idempotency_key,)).fetchone()
        return _result_from_json(row[0]) if row else None

    def payment(self, reference: str) -> LedgerEntry | None:
        with self._read_lock:
            row = self._reader.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE reference = ? AND operation = 'pay'", (reference,)
            ).fetchone()
        return _entry(row) if row else None

    def subscription_canceled(self, reference: str) -> bool:
        """Whether subscription `reference` was canceled (at once, not at its period end)."""
        return self._ended(reference, "cancel_subscription", "json_extract(result, '$.details.status') = 'canceled'")

    def customer_deleted(self, reference: str) -> bool:
        """Whether customer `reference` was deleted."""
        return self._ended(reference, "delete_customer", "outcome = 'approved'")

    def _ended(self, reference: str, operation: str, condition: str) -> bool:
        """Whether an `operation` about `reference` meeting `condition` is recorded (on its partial index)."""
        sql = f"SELECT 1 FROM ledger WHERE payment_reference = ? AND operation = '{operation}' AND {condition} LIMIT 1"
        with self._read_lock:
            row = self._reader.execute(sql, (reference,)).fetchone()
        return row is not None

    async def record(self, entry: LedgerEntry, currency: str | None, result: ProviderResult) -> ProviderResult:
        """Insert unless the key is already there; return the result the key holds (the first one), once durable."""
        loop = asyncio.get_running_loop()
        values = (
            entry.idempotency_key,
            entry.operation,
            entry.reference,
            entry.payment_reference,
            entry.amount,
            currency,
            int(entry.captured),
            entry.outcome,
            _result_json(result),
        )
        queued = _QueuedRecord(values, loop.create_future())
        self._turns.add(loop, queued)
        return _result_from_json(await queued.future)

    def _commit_turn(self, loop: asyncio.AbstractEventLoop, batch: list[_QueuedRecord]) -> None:
        try:
            stored = _commit(self._loop_db, batch)
        except sqlite3.OperationalError:  # the write lock is held elsewhere: wait for it off the loop
            loop.create_task(self._commit_waiting(batch))
            return
        except Exception as error:
            _settle(batch, error=error)
            return
        self._checkpointer.wanted.set()
        _settle(batch, stored=stored)

    async def _commit_waiting(self, batch: list[_QueuedRecord]) -> None:
        def commit() -> list[str]:
            with self._lock:
                return _commit(self._db, batch)

        try:
            stored = await asyncio.to_thread(commit)
        except Exception as error:
            _settle(batch, error=error)
            return
        self._checkpointer.wanted.set()
        _settle(batch, stored=stored)

    def entries(self) -> list[LedgerEntry]:
        with self._read_lock:
            rows = self._reader.execute(f"SELECT {_ENTRY_COLUMNS} FROM ledger ORDER BY rowid").fetchall()
        return [_entry(row) for row in rows]

    def count(self, idempotency_key: str | None = None) -> int:
        with self._read_lock:
            if idempotency_key is None:
                row = self._reader.execute("SELECT count(*) FROM ledger").fetchone()
            else:
                row = self._reader.execute(
                    "SELECT count(*) FROM ledger WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._checkpointer.stop()
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()
        self._loop_db.close()


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout_s)
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")  # checkpoints: the Checkpointer's thread
    return connection


def _commit(db: sqlite3.Connection, batch: list[_QueuedRecord]) -> list[str]:
    """One transaction for the batch: the result each key holds once committed (its first record's)."""
    stored: list[str] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for queued in batch:
            inserted = db.execute(_INSERT_RETURNING, queued.values).fetchall()  # none: the key holds a record
            kept = inserted or db.execute(_RESULT_OF_KEY, queued.values[:1]).fetchall()
            stored.append(kept[0][0])
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return stored


def _settle(batch: list[_QueuedRecord], stored: list[str] | None = None, error: Exception | None = None) -> None:
    for index, queued in enumerate(batch):
        if queued.future.done():
            continue  # the caller gave up (cancelled); its record stands
        if stored is not None:
            queued.future.set_result(stored[index])
        else:
            queued.future.set_exception(error or RuntimeError("sandbox ledger: no result"))


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    key, operation, reference, payment_reference, amount, outcome, captured = row
    return LedgerEntry(key, operation, reference, payment_reference, amount, outcome, bool(captured))


_ENTRY_COLUMNS = "idempotency_key, operation, reference, payment_reference, amount, outcome, captured"


def _invalid_payment_method() -> ProviderResult:
    known = ", ".join(TEST_CARDS)
    return ProviderResult(
        Outcome.PERMANENT,
        message=f"The sandbox does not know this payment_method; use one of {known}.",
        details={"invalid_param": "payment_method"},
    )


def _pay_result(request: PaymentRequest, reference: str) -> ProviderResult:
    method = request.payment_method
    card = TEST_CARDS.get(method) if not isinstance(method, OpaqueData) else None
    if card is None:
        return _invalid_payment_method()
    details = {"brand": card.brand, "last4": card.last4}
    if card.outcome is Outcome.REQUIRES_ACTION:
        next_action = {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": f"https://sandbox.invalid/3ds/{reference}"},
        }
        return ProviderResult(card.outcome, reference, next_action=next_action, amount=request.amount, details=details)
    return ProviderResult(
        card.outcome, reference, card.decline_code, card.message, amount=request.amount, details=details
    )


Decision = tuple[LedgerEntry, str | None, ProviderResult]  # what to record: entry, currency, result


class SandboxProvider:
    name = NAME

    def __init__(self, ledger_path: Path, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.ledger = SandboxLedger(ledger_path)
        self._random = random.Random(self.settings.fault_seed)

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        reference = reference_for("sbx", request.idempotency_key)

        def decide() -> Decision:
            result = _pay_result(request, reference)
            moved = result.outcome in (Outcome.APPROVED, Outcome.REQUIRES_ACTION)
            entry = LedgerEntry(
                request.idempotency_key,
                "pay",
                reference if moved or result.outcome is Outcome.DECLINED else None,
                None,
                request.amount,
                result.outcome.value,
                request.capture and result.outcome is Outcome.APPROVED,
            )
            return entry, request.currency, result

        return await self._call(request.idempotency_key, decide)

    async def capture(self, payment: PaymentRef, amount: int, idempotency_key: str) -> ProviderResult:
        def decide() -> Decision:
            found = self.ledger.payment(payment.reference)
            if found is None or found.outcome != Outcome.APPROVED.value:
                result = ProviderResult(Outcome.PERMANENT, message="The sandbox has no authorized payment to capture.")
            elif found.captured or amount > found.amount:
                message = "The sandbox cannot capture this amount."
                result = ProviderResult(Outcome.PERMANENT, message=message, details={"invalid_param": "amount"})
            else:
                result = ProviderResult(Outcome.APPROVED, payment.reference, amount=amount)
            entry = LedgerEntry(idempotency_key, "capture", None, payment.reference, amount, result.outcome.value, True)
            return entry, payment.currency, result

        return await self._call(idempotency_key, decide)

    async def refund(
        self,
        payment: PaymentRef,
        amount: int,
        idempotency_key: str,
        reason: str | None,
        earlier_attempt_at: datetime | None = None,
    ) -> ProviderResult:
        def decide() -> Decision:
            if self.ledger.payment(payment.reference) is None:
                result = ProviderResult(Outcome.PERMANENT, message="The sandbox has no such payment to refund.")
            else:
                result = ProviderResult(Outcome.APPROVED, reference_for("sbxre", idempotency_key), amount=amount)
            entry = LedgerEntry(
                idempotency_key, "refund", result.reference, payment.reference, amount, result.outcome.value, False
            )
            return entry, payment.currency, result

        return await self._call(idempotency_key, decide)

    async def void(self, payment: PaymentRef, idempotency_key: str) -> ProviderResult:
        def decide() -> Decision:
            if self.ledger.payment(payment.reference) is None:
                result = ProviderResult(Outcome.PERMANENT, message="The sandbox has no such payment to void.")
            else:
                result = ProviderResult(Outcome.APPROVED, payment.reference, amount=payment.amount_authorized)
            entry = LedgerEntry(
                idempotency_key, "void", None, payment.reference, payment.amount_authorized, result.outcome.value, False
            )
            return entry, payment.currency, result

        return await self._call(idempotency_key, decide)

    async def close(self) -> None:
        self.ledger.close()

    async def _call(self, idempotency_key: str, decide: Callable[[], Decision]) -> ProviderResult:
        """Replay a recorded key, else act once; with the configured faults around it."""
        faults = self._faults()
        await _inject_delay(faults)
        if self._never_failing():
            # The ledger's insert-or-keep answers a replay with the key's recorded result, in the turn's group
            # commit: no read first.
            return await self.ledger.record(*decide())
        recorded = self.ledger.lookup(idempotency_key)
        if recorded is not None:
            return recorded
        failing = self._random.random() < faults.failure_rate
        if failing and not faults.failure_after_commit:
            return _injected_failure()
        result = await self.ledger.record(*decide())
        return _injected_failure() if failing else result

    def _never_failing(self) -> bool:
        """No failure can be injected in this process (none configured, no faults file to configure one later)."""
        return self.settings.faults_file is None and not self.settings.failure_rate

    def _faults(self) -> SandboxSettings:
        """The configured faults, overridden by SANDBOX_FAULTS_FILE while that file exists and parses."""
        path = self.settings.faults_file
        if path is None:
            return self.settings
        try:
            overrides = json.loads(path.read_text())
            return SandboxSettings.model_validate({**self.settings.model_dump(), **overrides})
        except (OSError, ValueError):  # absent or half-written: the configured faults
            return self.settings


async def _inject_delay(faults: SandboxSettings) -> None:
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.hang:
        await asyncio.Event().wait()


def _injected_failure() -> ProviderResult:
    return ProviderResult(Outcome.RETRYABLE, message="The sandbox injected a retryable failure.", retry_after=1.0)
