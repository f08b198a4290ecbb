"""The recovery sweep: every operation that has a `…Requested` but no outcome, idle for longer than a given age
(its worker died, or embedded mode lost its in-memory queue), is driven to an outcome with the same provider
idempotency key, so at most one movement of money results."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from payments_shared.eventstore.port import EventStore, RecordedEvent
from payments_shared.messages import Command, event_metadata

from payments_transactions.domain import events as ev
from payments_transactions.domain.state import Operation, Transaction
from payments_transactions.driver import OperationDriver
from payments_transactions.streams import TransactionStreams

logger = logging.getLogger(__name__)

RECOVERY_ACTOR = "system:recovery"
REQUEST_TYPES = frozenset({ev.TRANSACTION_REQUESTED, ev.CAPTURE_REQUESTED, ev.REFUND_REQUESTED, ev.VOID_REQUESTED})
STREAM_PREFIX = "transaction-"


def _request_event(recorded: list[RecordedEvent], operation: Operation) -> RecordedEvent:
    return next(
        event for event in recorded if event.type in REQUEST_TYPES and event.data["command_id"] == operation.command_id
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Recovery:
    def __init__(self, store: EventStore, streams: TransactionStreams, driver: OperationDriver) -> None:
        self._store = store
        self._streams = streams
        self._driver = driver

    async def _candidate_streams(self) -> list[str]:
        """Transaction ids with at least one request (a full scan of the store; a projection can replace it)."""
        found: dict[str, None] = {}
        async for event in self._store.read_all():
            if event.type in REQUEST_TYPES and event.stream.startswith(STREAM_PREFIX):
                found[event.stream.removeprefix(STREAM_PREFIX)] = None
        return list(found)

    async def run(self, min_age_s: float) -> int:
        """Drive every open operation idle for longer than `min_age_s`; returns how many were driven."""
        cutoff = datetime.now(UTC) - timedelta(seconds=min_age_s)
        driven = 0
        for transaction_id in await self._candidate_streams():
            recorded, transaction = await self._streams.load(transaction_id)
            if transaction is None or not recorded or _aware(recorded[-1].recorded_at) > cutoff:
                continue
            for operation in transaction.open_operations():
                if await self._drive(recorded, transaction, operation):
                    driven += 1
        if driven:
            logger.info("recovery drove unfinished operations", extra={"driven": driven})
        return driven

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
