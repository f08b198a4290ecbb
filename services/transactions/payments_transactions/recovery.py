"""The recovery sweep: every operation that has a `…Requested` but no outcome, idle for longer than a given age
(its worker died, its command was dead-lettered, embedded mode lost its in-memory queue, or its provider failed
retryably), is driven to an outcome with the same provider idempotency key, so at most one movement of money
results.

Efficient enough to run every few seconds: the first run scans the store once; later runs take only the events
appended since (`EventNotes`: noted as they are appended while the worker sweeps periodically) and load only the
transactions that had an open operation. An operation whose provider keeps failing is tried again after an age that
doubles with each recorded failure (capped), and not at all while its provider's circuit breaker is open."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Final

from payments_shared.eventstore.notes import EventNotes
from payments_shared.eventstore.port import EventStore, RecordedEvent
from payments_shared.messages import Command, event_metadata
from payments_shared.timestamps import as_utc

from payments_transactions.domain import events as ev
from payments_transactions.domain.state import Operation, Transaction
from payments_transactions.driver import OperationDriver
from payments_transactions.streams import TransactionStreams

logger = logging.getLogger(__name__)

RECOVERY_ACTOR = "system:recovery"
REQUEST_TYPES = frozenset({ev.TRANSACTION_REQUESTED, ev.CAPTURE_REQUESTED, ev.REFUND_REQUESTED, ev.VOID_REQUESTED})
# Events that give an operation its outcome (the state's `_finish`): a scan that sees one for every operation of a
# transaction drops it, so a sweep loads only transactions that may still be open, not every recent one.
OUTCOME_TYPES = frozenset(
    {
        ev.PAYMENT_AUTHORIZED,
        ev.PAYMENT_CAPTURED,
        ev.PAYMENT_REQUIRES_ACTION,
        ev.PAYMENT_HELD_FOR_REVIEW,
        ev.PAYMENT_FAILED,
        ev.CAPTURE_SUCCEEDED,
        ev.CAPTURE_FAILED,
        ev.VOID_SUCCEEDED,
        ev.VOID_FAILED,
        ev.REFUND_SUCCEEDED,
        ev.REFUND_FAILED,
    }
)
OPERATION_TYPES = REQUEST_TYPES | OUTCOME_TYPES
STREAM_PREFIX = "transaction-"
CONCURRENT_DRIVES: Final = 8
MAX_BACKOFF_S: Final = 300.0
MAX_BACKOFF_DOUBLINGS: Final = 8


def _request_event(recorded: list[RecordedEvent], operation: Operation) -> RecordedEvent:
    return next(
        event for event in recorded if event.type in REQUEST_TYPES and event.data["command_id"] == operation.command_id
    )


def _failures(recorded: list[RecordedEvent], operation: Operation) -> list[RecordedEvent]:
    return [
        event
        for event in recorded
        if event.type == ev.PROVIDER_CALL_FAILED and event.data.get("command_id") == operation.command_id
    ]


def required_idle_for(min_age_s: float, failures: list[RecordedEvent]) -> float:
    """`required_idle_s`; but after an unresolved answer (the provider holds several objects that may be the
    earlier attempt's: an operator decides) the sweep asks again only after the answer's own `retry_after`."""
    last = failures[-1].data if failures else {}
    if last.get("unresolved") and min_age_s > 0:
        return max(min_age_s, float(last.get("retry_after") or MAX_BACKOFF_S))
    return required_idle_s(min_age_s, len(failures))


def required_idle_s(min_age_s: float, failures: int) -> float:
    """How long an operation must have been idle before the sweep drives it again: the minimum age, doubled for
    every retryable failure already recorded (capped), so a long provider outage does not fill the stream."""
    if failures == 0 or min_age_s == 0:
        return min_age_s
    return float(min(MAX_BACKOFF_S, min_age_s * 2 ** min(failures, MAX_BACKOFF_DOUBLINGS)))


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _operation_note(event: RecordedEvent) -> tuple[str, str, str] | None:
    """(transaction id, event type, command id) of an operation's request or outcome."""
    if not event.stream.startswith(STREAM_PREFIX) or event.type not in OPERATION_TYPES:
        return None
    return event.stream.removeprefix(STREAM_PREFIX), event.type, str(event.data.get("command_id"))


class Recovery:
    def __init__(self, store: EventStore, streams: TransactionStreams, driver: OperationDriver) -> None:
        self._streams = streams
        self._driver = driver
        self._candidates: set[str] = set()  # transaction ids that may have an open operation
        self._unfinished: dict[str, set[str]] = {}  # candidate → command ids requested, no outcome scanned yet
        self._notes = EventNotes(store, _operation_note, "transactions-recovery-follower")
        self._lock = asyncio.Lock()

    def start_following(self) -> None:
        """Note new events as they are appended (until `stop_following`), so runs need not read them back."""
        self._notes.start()

    async def stop_following(self) -> None:
        await self._notes.stop()

    async def _take_new_events(self) -> None:
        """Add every transaction with a request appended since the last run (the whole store the first time)."""
        for transaction_id, event_type, command_id in await self._notes.take():
            if event_type in REQUEST_TYPES:
                self._candidates.add(transaction_id)
                self._unfinished.setdefault(transaction_id, set()).add(command_id)
            elif transaction_id in self._unfinished:
                unfinished = self._unfinished[transaction_id]
                unfinished.discard(command_id)
                if not unfinished:
                    self._forget(transaction_id)

    def _forget(self, transaction_id: str) -> None:
        self._candidates.discard(transaction_id)
        self._unfinished.pop(transaction_id, None)

    async def run(self, min_age_s: float) -> int:
        """Drive every open operation idle for longer than `min_age_s`; returns how many were driven."""
        async with self._lock:  # the start-up run and the periodic one never overlap
            await self._take_new_events()
            now = _utc_now()
            due: list[tuple[list[RecordedEvent], Transaction, Operation]] = []
            for transaction_id in sorted(self._candidates):
                recorded, transaction = await self._streams.load(transaction_id)
                if transaction is None or not transaction.open_operations():
                    self._forget(transaction_id)
                    continue
                if self._driver.refuses(transaction):
                    continue  # its breaker is open: try when it half-opens
                idle_s = (now - as_utc(recorded[-1].recorded_at)).total_seconds()
                for operation in transaction.open_operations():
                    if idle_s >= required_idle_for(min_age_s, _failures(recorded, operation)):
                        due.append((recorded, transaction, operation))
            driven = await self._drive_all(due)
        if driven:
            logger.info("recovery drove unfinished operations", extra={"driven": driven, "open": len(self._candidates)})
        return driven

    async def _drive_all(self, due: list[tuple[list[RecordedEvent], Transaction, Operation]]) -> int:
        limit = asyncio.Semaphore(CONCURRENT_DRIVES)

        async def bounded(recorded: list[RecordedEvent], transaction: Transaction, operation: Operation) -> bool:
            async with limit:
                return await self._drive(recorded, transaction, operation)

        results = await asyncio.gather(*(bounded(*item) for item in due))
        return sum(1 for result in results if result)

    async def _drive(self, recorded: list[RecordedEvent], transaction: Transaction, operation: Operation) -> bool:
        request = _request_event(recorded, operation)
        command = Command(
            type=f"recover_{operation.kind.value}",
            workspace=transaction.workspace,
            actor=RECOVERY_ACTOR,
            command_id=operation.command_id,
        )
        correlation_id = str(request.metadata.get("$correlationId") or operation.command_id)

        def metadata() -> dict[str, Any]:
            return event_metadata(command, correlation_id, str(request.id))

        try:
            await self._driver.drive(transaction.id, operation.command_id, metadata)
        except Exception:  # one broken transaction must not stop the sweep; it is logged and tried next time
            logger.exception("recovery failed", extra={"transaction_id": transaction.id})
            return False
        return True
