"""The transactions worker: one handler for every message on TRANSACTIONS_QUEUE.

Every ApiError becomes a reply (API.md's error shape); any other exception propagates so the broker redelivers
the message (the steps make a redelivery safe) and, past its delivery limit, dead-letters it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from payments_shared import logging as payments_logging
from payments_shared.broker.port import Message
from payments_shared.errors import ApiError, invalid
from payments_shared.eventstore.port import EventStore
from payments_shared.idempotency import IdempotencyGuard
from payments_shared.messages import Command
from payments_shared.providers.port import PaymentProvider
from pydantic import ValidationError

from payments_transactions.context import Delivery
from payments_transactions.driver import OperationDriver
from payments_transactions.followups import FollowUpHandler
from payments_transactions.payments import PaymentHandler
from payments_transactions.queries import QueryHandler
from payments_transactions.recovery import Recovery
from payments_transactions.settings import TransactionsSettings
from payments_transactions.streams import TransactionStreams
from payments_transactions.views import error_reply

logger = logging.getLogger(__name__)

CommandHandler = Callable[[Delivery], Awaitable[dict[str, Any]]]


class TransactionsWorker:
    def __init__(
        self, store: EventStore, providers: Mapping[str, PaymentProvider], settings: TransactionsSettings
    ) -> None:
        self.settings = settings
        streams = TransactionStreams(store)
        guard = IdempotencyGuard(store, settings.in_flight_window_s)
        driver = OperationDriver(streams, providers, settings.provider_timeout_s)
        payments = PaymentHandler(streams, guard, driver, providers, settings)
        follow_ups = FollowUpHandler(streams, guard, driver, settings)
        queries = QueryHandler(streams)
        self._recovery = Recovery(store, streams, driver)
        self._handlers: dict[str, CommandHandler] = {
            "charge": payments.handle,
            "authorize": payments.handle,
            "capture": follow_ups.handle,
            "refund": follow_ups.handle,
            "void": follow_ups.handle,
            "get_transaction": queries.get_transaction,
            "get_transaction_events": queries.get_transaction_events,
        }

    async def handle(self, message: Message) -> Mapping[str, Any]:
        try:
            command = Command.model_validate(message.body)
        except ValidationError:
            logger.error("malformed command", extra={"message_id": message.message_id})
            return error_reply(invalid("Malformed command."))
        delivery = Delivery.of(message, command)
        payments_logging.correlation_id.set(delivery.correlation_id)
        handler = self._handlers.get(command.type)
        if handler is None:
            return error_reply(invalid(f"Unknown command type {command.type!r}.", param="type"))
        try:
            return await handler(delivery)
        except ApiError as error:
            return error_reply(error)

    async def recover(self, min_age_s: float | None = None) -> int:
        """Drive every outcome-less operation idle for longer than `min_age_s` (default: the setting)."""
        age = self.settings.recovery_min_age_s if min_age_s is None else min_age_s
        return await self._recovery.run(age)
