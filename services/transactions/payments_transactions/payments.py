"""Charge and authorize: the creating commands. The transaction id is derived from the command id, so a retried
request lands on the same stream, whose first event (appended expecting no stream) decides who does the work.

Once the gateway accepted a create (it may have answered 202 `pending` with the transaction's id), a refusal here
is recorded on that stream as a failed transaction (`decisions.refuse_payment`), never only answered. The one
refusal that creates nothing is a `customer_id` the gateway found gone: only an earlier request with the same key can
answer it (else 404), and the gateway does not answer it 202."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from payments_shared import faults
from payments_shared.errors import not_found
from payments_shared.eventstore.port import NO_STREAM, RecordedEvent, WrongExpectedVersion
from payments_shared.idempotency import (
    KEY_MADE_ANOTHER_REQUEST,
    IdempotencyGuard,
    idempotency_mismatch,
    in_progress,
    may_take_over,
    replayed,
)
from payments_shared.messages import CUSTOMER_MISSING
from payments_shared.providers.port import PaymentProvider

from payments_transactions.context import Delivery
from payments_transactions.domain import decisions
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.state import Transaction
from payments_transactions.driver import OperationDriver
from payments_transactions.provider_calls import describe_payment_method, parse_payment_method
from payments_transactions.settings import TransactionsSettings
from payments_transactions.streams import TransactionStreams
from payments_transactions.views import awaiting_decision, operation_reply, outcome_reply

logger = logging.getLogger(__name__)

MAX_RACES: Final = 20


class PaymentHandler:
    def __init__(
        self,
        streams: TransactionStreams,
        guard: IdempotencyGuard,
        driver: OperationDriver,
        providers: Mapping[str, PaymentProvider],
        settings: TransactionsSettings,
    ) -> None:
        self._streams = streams
        self._guard = guard
        self._driver = driver
        self._providers = providers
        self._settings = settings

    async def handle(self, delivery: Delivery) -> dict[str, Any]:
        command = delivery.command
        payload = delivery.payload
        transaction_id = str(payload["transaction_id"])
        if payload.get(CUSTOMER_MISSING):
            return await self._answer_existing(delivery, transaction_id)
        provider = payload.get("provider") or self._settings.payments_default_provider
        method = parse_payment_method(payload["payment_method"])
        requested = decisions.request_payment(
            transaction_id=transaction_id,
            kind=command.type,
            amount=int(payload["amount"]),
            currency=str(payload["currency"]).lower(),
            provider=provider,
            payment_method=describe_payment_method(method),
            customer_id=payload.get("customer_id"),
            customer_reference=payload.get("customer_reference"),
            description=payload.get("description"),
            metadata=payload.get("metadata") or {},
            command_id=command.command_id,
            message_id=delivery.message_id,
            fingerprint=command.fingerprint,
        )
        first = self._first_events(requested, provider)
        refused = len(first) > 1  # the request and its failure, appended together
        known: list[RecordedEvent] | None = None  # the stream as this delivery created it (no read needed)
        for _ in range(MAX_RACES):
            try:  # appending expecting no stream is the existence check: a first delivery reads nothing
                known = await self._streams.append_all(transaction_id, first, NO_STREAM, delivery.metadata())
            except WrongExpectedVersion:
                pass  # it exists (an earlier or concurrent delivery): look at it
            else:
                if refused:
                    return operation_reply(known, command.command_id)
                faults.reached("after_transaction_requested")
                break
            recorded, transaction = await self._streams.load(transaction_id)
            if transaction is None:
                continue
            finished = self._finished_or_taken_over(recorded, transaction, delivery)
            if finished is not None:
                return finished
            break
        else:
            raise in_progress()
        first_attempt = known is not None  # this delivery recorded the request
        recorded = await self._driver.drive(
            transaction_id, command.command_id, delivery.metadata, method, known, first_attempt=first_attempt
        )
        return operation_reply(recorded, command.command_id)

    def _first_events(self, requested: DomainEvent, provider: str) -> list[DomainEvent]:
        """The request, or the request and its refusal when no provider here serves it (this worker's providers may
        differ from what the gateway accepted). A client told `pending` then finds it `failed`, and why."""
        if provider not in self._providers:
            return decisions.refuse_payment(requested, decisions.provider_not_configured(provider))
        return [requested]

    async def _answer_existing(self, delivery: Delivery, transaction_id: str) -> dict[str, Any]:
        """The transaction this key made, carried on or replayed; 422 when the key made another kind of request;
        404 on customer_id when it made nothing."""
        recorded, transaction = await self._streams.load(transaction_id)
        if transaction is None:
            if await self._guard.state(delivery.command.command_id) is not None:
                raise idempotency_mismatch(KEY_MADE_ANOTHER_REQUEST)
            raise not_found("customer", param="customer_id")
        finished = self._finished_or_taken_over(recorded, transaction, delivery)
        if finished is not None:
            return finished
        command_id = delivery.command.command_id
        recorded = await self._driver.drive(transaction_id, command_id, delivery.metadata)  # its stored method
        return operation_reply(recorded, command_id)

    def _finished_or_taken_over(
        self, recorded: list[RecordedEvent], transaction: Transaction, delivery: Delivery
    ) -> dict[str, Any] | None:
        """An existing transaction of this key: its first response when finished, None when this delivery takes
        the unfinished payment over, 409 while another is still working on it."""
        self._check_same_request(transaction, delivery)
        operation = transaction.payment
        if operation.finished:
            return replayed(outcome_reply(recorded, operation))
        waiting = awaiting_decision(transaction, operation, datetime.now(UTC))
        if waiting is not None:  # unresolved: an operator decides, asking Stripe again would answer the same
            return waiting
        if not self._may_take_over(transaction, delivery):
            raise in_progress()
        logger.info("taking over an unfinished payment", extra={"transaction_id": transaction.id})
        return None

    @staticmethod
    def _check_same_request(transaction: Transaction, delivery: Delivery) -> None:
        command = delivery.command
        operation = transaction.payment
        same = (
            transaction.workspace == command.workspace
            and transaction.kind == command.type
            and operation.command_id == command.command_id
            and operation.fingerprint == command.fingerprint
        )
        if not same:
            raise idempotency_mismatch()

    def _may_take_over(self, transaction: Transaction, delivery: Delivery) -> bool:
        operation = transaction.payment
        return may_take_over(
            claimed_at=operation.requested_at,
            claim_message_id=operation.message_id,
            message_id=delivery.message_id,
            redelivered=delivery.redelivered,
            idle=not operation.attempt_open,
            in_flight_window_s=self._settings.in_flight_window_s,
        )
