"""The transactions worker: one handler for every message on TRANSACTIONS_QUEUE.

Every ApiError becomes a reply (API.md's error shape); any other exception propagates so the broker redelivers
the message (the steps make a redelivery safe) and, past its delivery limit, dead-letters it. An event store that
cannot be used is a 503 while the client still waits for the answer; once it has stopped waiting (its 202
`pending` says the command is still carried out) or when nobody ever waits (a provider event), the message is
redelivered instead, since a 503 would reach no one and end the command undone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from payments_shared import logging as payments_logging
from payments_shared.broker.expiry import CLOCK_SKEW_S
from payments_shared.broker.port import Message
from payments_shared.broker.store_failures import STORE_RETRY_AFTER_S
from payments_shared.errors import ApiError, invalid
from payments_shared.eventstore.port import EventStore, EventStoreUnavailable
from payments_shared.idempotency import IdempotencyGuard
from payments_shared.messages import Command
from payments_shared.providers.port import PaymentProvider
from payments_shared.providers.registry import breaker_states, with_resilience
from payments_shared.providers.resilience import call_budget
from payments_shared.tasks import PeriodicSweep
from pydantic import ValidationError

from payments_transactions.context import Delivery
from payments_transactions.driver import OperationDriver
from payments_transactions.followups import FollowUpHandler
from payments_transactions.payments import PaymentHandler
from payments_transactions.provider_events import APPLY_PROVIDER_EVENT, ProviderEventHandler
from payments_transactions.provider_index import ProviderIndex
from payments_transactions.queries import QueryHandler
from payments_transactions.recovery import Recovery
from payments_transactions.settings import TransactionsSettings
from payments_transactions.streams import TransactionStreams
from payments_transactions.views import error_reply

logger = logging.getLogger(__name__)

CommandHandler = Callable[[Delivery], Awaitable[dict[str, Any]]]

# Provider retries stop this long before the client's RPC deadline, so the reply can still reach it.
DEADLINE_MARGIN_S: Final = 0.25


def store_unavailable() -> ApiError:
    """The event store cannot be written or read: nothing was recorded past what the stream shows, a retry with
    the same Idempotency-Key carries on where this attempt stopped."""
    return ApiError(
        "provider_unavailable",
        "The service is temporarily unavailable (event store); retry with the same Idempotency-Key.",
        code="service_unavailable",
        retry_after=STORE_RETRY_AFTER_S,
    )


def seconds_left(issued_at: str, rpc_timeout_s: float) -> float:
    """What remains of the client's deadline for a command issued at `issued_at` (0 when past or unreadable)."""
    try:
        issued = datetime.fromisoformat(issued_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if issued.tzinfo is None:
        issued = issued.replace(tzinfo=UTC)
    elapsed = (datetime.now(UTC) - issued).total_seconds()
    return max(0.0, rpc_timeout_s - elapsed - DEADLINE_MARGIN_S)


class TransactionsWorker:
    def __init__(
        self, store: EventStore, providers: Mapping[str, PaymentProvider], settings: TransactionsSettings
    ) -> None:
        self.settings = settings
        self.providers = with_resilience(providers, settings)  # one breaker per provider in this worker
        providers = self.providers
        streams = TransactionStreams(store)
        guard = IdempotencyGuard(store, settings.in_flight_window_s)
        index = ProviderIndex(store)  # one read model of the store: webhooks and re-drives share it
        driver = OperationDriver(streams, guard, providers, _backstop_timeout_s(settings), index)
        payments = PaymentHandler(streams, guard, driver, providers, settings)
        follow_ups = FollowUpHandler(streams, guard, driver, settings)
        queries = QueryHandler(streams)
        self._recovery = Recovery(store, streams, driver)
        self._sweeper = PeriodicSweep("transactions-recovery-sweep", settings.recovery_interval_s, self.recover)
        self._handlers: dict[str, CommandHandler] = {
            "charge": payments.handle,
            "authorize": payments.handle,
            "capture": follow_ups.handle,
            "refund": follow_ups.handle,
            "void": follow_ups.handle,
            "get_transaction": queries.get_transaction,
            "get_transaction_events": queries.get_transaction_events,
            APPLY_PROVIDER_EVENT: ProviderEventHandler(streams, providers, index).handle,
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
            with call_budget(seconds_left(command.issued_at, self.settings.rpc_timeout_s)):
                return await handler(delivery)
        except ApiError as error:
            return error_reply(error)
        except EventStoreUnavailable as error:
            logger.warning("event store unavailable", extra={"command": command.type, "reason": str(error)})
            if self._client_waits(command):
                return error_reply(store_unavailable())
            raise  # redelivered after a pause (`pausing_on_store_failure`, where it is consumed)

    def _client_waits(self, command: Command) -> bool:
        """Whether a client is still waiting for this command's reply (with a margin for the clocks' difference)."""
        if command.type == APPLY_PROVIDER_EVENT:  # sent by webhook-ingest, never requested
            return False
        return seconds_left(command.issued_at, self.settings.rpc_timeout_s) > CLOCK_SKEW_S

    async def recover(self, min_age_s: float | None = None) -> int:
        """Drive every outcome-less operation idle for longer than `min_age_s` (default: the setting)."""
        age = self.settings.recovery_min_age_s if min_age_s is None else min_age_s
        return await self._recovery.run(age)

    def start_sweeping(self) -> None:
        """Run `recover()` every RECOVERY_INTERVAL_S in the background (until `stop`)."""
        if self.settings.recovery_interval_s > 0:
            self._recovery.start_following()
        self._sweeper.start()

    def breakers(self) -> dict[str, dict[str, Any]]:
        """Each provider's circuit breaker: state, failures counted, seconds until it half-opens."""
        return breaker_states(self.providers)

    async def stop(self) -> None:
        await self._sweeper.stop()
        await self._recovery.stop_following()


def _backstop_timeout_s(settings: TransactionsSettings) -> float:
    """The driver's outer bound on one provider call with every retry (the resilience layer ends it sooner)."""
    attempts = settings.provider_retry_attempts
    return attempts * (settings.provider_timeout_s + settings.provider_retry_cap_s) + 1.0
