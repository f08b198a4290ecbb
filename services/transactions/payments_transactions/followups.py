"""Capture, refund and void: each appends its own `…Requested` to the transaction's stream (at the version it
read, re-checking the rules after a concurrent append) before the provider is called, then its outcome.

With an Idempotency-Key the whole reply is also kept by the generic guard (`idempotency-{command_id}`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

from payments_shared import faults, ids
from payments_shared.errors import ApiError, conflict, invalid, not_found
from payments_shared.eventstore.port import WrongExpectedVersion
from payments_shared.idempotency import Claimed, IdempotencyGuard, in_progress, may_take_over, replayed
from payments_shared.idempotency import Replay as KeyReplay
from payments_shared.money import STRIPE_THREE_DECIMAL_STEP, provider_amount_refusal

from payments_transactions.context import Delivery
from payments_transactions.domain import decisions
from payments_transactions.domain.decisions import DomainError
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.state import Operation, Transaction
from payments_transactions.driver import OperationDriver
from payments_transactions.settings import TransactionsSettings
from payments_transactions.streams import TransactionStreams
from payments_transactions.views import awaiting_decision, error_reply, operation_reply, outcome_reply

logger = logging.getLogger(__name__)

MAX_RACES: Final = 50
KEY_IN_USE: Final = "idempotency_key_in_use"
TRANSIENT_CONFLICTS: Final = frozenset({"operation_in_progress", KEY_IN_USE})


def _optional_amount(payload: dict[str, Any]) -> int | None:
    amount = payload.get("amount")
    return None if amount is None else int(amount)


def decide_request(transaction: Transaction, delivery: Delivery) -> DomainEvent:
    """The follow-up's `…Requested` event, or DomainError when the rules forbid it now."""
    command = delivery.command
    payload = delivery.payload
    command_id, message_id, fingerprint = command.command_id, delivery.message_id, command.fingerprint
    if command.type == "capture":
        amount = _optional_amount(payload)
        return decisions.request_capture(transaction, command_id, amount, message_id, fingerprint)
    if command.type == "void":
        return decisions.request_void(transaction, command_id, message_id, fingerprint)
    refund_id = ids.derived_id("re", command_id)
    amount, reason = _optional_amount(payload), payload.get("reason")
    return decisions.request_refund(transaction, command_id, refund_id, amount, reason, message_id, fingerprint)


class FollowUpHandler:
    def __init__(
        self,
        streams: TransactionStreams,
        guard: IdempotencyGuard,
        driver: OperationDriver,
        settings: TransactionsSettings,
    ) -> None:
        self._streams = streams
        self._guard = guard
        self._driver = driver
        self._settings = settings

    async def handle(self, delivery: Delivery) -> dict[str, Any]:
        await self._check_provider_amount(delivery)
        if delivery.command.idempotency_key is None:
            return await self._perform(delivery)
        return await self._keyed(delivery)

    async def _check_provider_amount(self, delivery: Delivery) -> None:
        """A capture or refund amount the transaction's provider refuses in its currency is 400 naming `amount`,
        before anything is kept under the key (Stripe keeps no result of a request that failed validation). Only an
        amount that may be refused costs a read of the transaction."""
        amount = delivery.payload.get("amount")
        if not isinstance(amount, int) or amount % STRIPE_THREE_DECIMAL_STEP == 0:
            return
        _, transaction = await self._streams.load(str(delivery.payload["transaction_id"]))
        if transaction is None or transaction.workspace != delivery.command.workspace:
            return  # _perform answers 404
        refusal = provider_amount_refusal(transaction.provider, transaction.currency, amount)
        if refusal is not None:
            raise invalid(refusal, param="amount")

    async def _keyed(self, delivery: Delivery) -> dict[str, Any]:
        command = delivery.command
        try:
            begun = await self._guard.begin(
                command.command_id,
                fingerprint=command.fingerprint,
                route=command.type,
                target=str(delivery.payload.get("transaction_id")),
                message_id=delivery.message_id,
                redelivered=delivery.redelivered,
                metadata=delivery.metadata(),
            )
        except ApiError as error:
            # The key's claim is another attempt's, and recent: 409 unless that attempt's operation was finished
            # meanwhile by another hand (a restarted worker's recovery), its response then unrecorded under the key.
            finished = await self._finished_earlier(delivery) if error.code == KEY_IN_USE else None
            if finished is None:
                raise
            return finished
        if isinstance(begun, KeyReplay):
            return begun.response
        if begun.version > 0:  # taken over from an earlier attempt, which may have been finished since
            finished = await self._finished_earlier(delivery)
            if finished is not None:
                return await self._keep(begun, finished, delivery)
        try:
            reply = await self._perform(delivery)
        except ApiError as error:
            reply = error_reply(error)
            if error.code in TRANSIENT_CONFLICTS:
                await self._guard.release(begun, f"{error.code}", delivery.metadata())
                return reply
        return await self._keep(begun, reply, delivery)

    async def _keep(self, claimed: Claimed, reply: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
        if reply["status"] == 503:  # nothing final happened: a retry with this key tries again at once
            await self._guard.release(claimed, "provider_unavailable", delivery.metadata())
            return reply
        kept = await self._guard.record(claimed, reply, delivery.metadata())
        faults.reached("after_response_recorded")
        return kept

    async def _finished_earlier(self, delivery: Delivery) -> dict[str, Any] | None:
        """The response of this key's operation when an earlier attempt, or the recovery of one, finished it."""
        recorded, transaction = await self._streams.load(str(delivery.payload["transaction_id"]))
        operation = None if transaction is None else transaction.operations.get(delivery.command.command_id)
        if operation is None or not operation.finished:
            return None
        return replayed(outcome_reply(recorded, operation))

    async def _perform(self, delivery: Delivery) -> dict[str, Any]:
        command = delivery.command
        transaction_id = str(delivery.payload["transaction_id"])
        requested_here = False
        for _ in range(MAX_RACES):
            recorded, transaction = await self._streams.load(transaction_id)
            if transaction is None or transaction.workspace != command.workspace:
                raise not_found("transaction", param="transaction_id")
            operation = transaction.operations.get(command.command_id)
            if operation is not None:
                if operation.finished:
                    return outcome_reply(recorded, operation)
                waiting = awaiting_decision(transaction, operation, datetime.now(UTC))
                if waiting is not None:  # unresolved: an operator decides, asking again would answer the same
                    return waiting
                if not self._may_take_over(operation, delivery):
                    raise in_progress()
                break
            self._driver.provider_for(transaction)  # 503 before anything is recorded if it is not configured
            try:
                requested = decide_request(transaction, delivery)
            except DomainError as error:
                raise conflict(error.message, code=error.code) from None
            try:
                await self._streams.append(transaction_id, [requested], transaction.version, delivery.metadata())
            except WrongExpectedVersion:
                continue  # something else happened to the transaction: reload and check the rules again
            faults.reached(f"after_{command.type}_requested")
            requested_here = True
            break
        else:
            raise conflict("The transaction is changing too fast; retry.", code="operation_in_progress")
        recorded = await self._driver.drive(
            transaction_id, command.command_id, delivery.metadata, first_attempt=requested_here
        )
        return operation_reply(recorded, command.command_id)

    def _may_take_over(self, operation: Operation, delivery: Delivery) -> bool:
        return may_take_over(
            claimed_at=operation.requested_at,
            claim_message_id=operation.message_id,
            message_id=delivery.message_id,
            redelivered=delivery.redelivered,
            idle=not operation.attempt_open,
            in_flight_window_s=self._settings.in_flight_window_s,
        )
