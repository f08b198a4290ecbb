"""Driving one open operation to an outcome: call the provider once, then append the outcome at the version
read, reloading on a concurrent append (the provider is not called again for that)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from payments_shared import faults
from payments_shared.errors import ApiError
from payments_shared.eventstore.port import RecordedEvent, WrongExpectedVersion
from payments_shared.idempotency import KEY_MADE_ANOTHER_REQUEST, IdempotencyGuard, idempotency_mismatch, in_progress
from payments_shared.providers.port import (
    AsksClaims,
    Claims,
    ClaimsOn,
    Outcome,
    PaymentMethod,
    PaymentProvider,
    ProviderResult,
)

from payments_transactions.domain import decisions
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.state import Operation, OperationKind, Transaction
from payments_transactions.provider_calls import call_provider
from payments_transactions.provider_index import ProviderIndex
from payments_transactions.streams import TransactionStreams

logger = logging.getLogger(__name__)

MAX_APPEND_RACES: Final = 50
FAILED_OUTCOMES: Final = frozenset({Outcome.RETRYABLE, Outcome.PERMANENT, Outcome.UNAVAILABLE})

Decide = Callable[[Transaction, str, ProviderResult], Sequence[DomainEvent]]


def _payment_outcome(transaction: Transaction, _command_id: str, result: ProviderResult) -> list[DomainEvent]:
    return [decisions.payment_outcome(transaction, result)]


def _capture_outcome(transaction: Transaction, command_id: str, result: ProviderResult) -> list[DomainEvent]:
    return [decisions.capture_outcome(transaction, command_id, result)]


def _void_outcome(transaction: Transaction, command_id: str, result: ProviderResult) -> list[DomainEvent]:
    return [decisions.void_outcome(transaction, command_id, result)]


# Each decides the events of one append: the outcome first (a refund's may bring the provider reports it settles).
OUTCOME_BY_KIND: Final[Mapping[OperationKind, Decide]] = {
    OperationKind.PAYMENT: _payment_outcome,
    OperationKind.CAPTURE: _capture_outcome,
    OperationKind.REFUND: decisions.refund_outcome_events,
    OperationKind.VOID: _void_outcome,
}


class OperationDriver:
    def __init__(
        self,
        streams: TransactionStreams,
        guard: IdempotencyGuard,
        providers: Mapping[str, PaymentProvider],
        provider_timeout_s: float,
        index: ProviderIndex | None = None,
    ) -> None:
        self._streams = streams
        self._guard = guard
        self._providers = providers
        self._timeout_s = provider_timeout_s
        self._index = index if index is not None else ProviderIndex(streams.store)

    def provider_for(self, transaction: Transaction) -> PaymentProvider:
        provider = self._providers.get(transaction.provider)
        if provider is None:
            raise ApiError(
                "provider_unavailable",
                f"The provider {transaction.provider} is not configured on this worker.",
                transaction_id=transaction.id,
                retry_after=30,
            )
        return provider

    def refuses(self, transaction: Transaction) -> bool:
        """The transaction's provider is behind an open circuit breaker: calling it now would only be refused."""
        breaker = getattr(self._providers.get(transaction.provider), "breaker", None)
        return breaker is not None and bool(breaker.refuses())

    def _claims_on(self, transaction: Transaction) -> ClaimsOn:
        """What other transactions claim of the provider's objects (asked only by a re-drive that looks for what its
        earlier attempt made: the index's first read of the store is never on the hot path). Inside the provider
        call it reads only what the store appended since `_prepare_claims` (a payment requested meanwhile counts)."""
        index, provider, transaction_id = self._index, transaction.provider, transaction.id

        async def claims(references: Sequence[str]) -> Claims:
            return await index.claims(provider, transaction_id, references)

        return claims

    async def _refuse_reused_key(
        self,
        transaction_id: str,
        command_id: str,
        recorded: list[RecordedEvent],
        metadata: Callable[[], Mapping[str, Any]],
    ) -> list[RecordedEvent]:
        """Another kind of request claimed the key before this payment's transaction was created (it looked before
        that, found none and went ahead): the payment is recorded failed, never sent. Checked before every attempt,
        so a payment whose first attempt died before checking is refused by its next, which is still safe: its
        check comes before any provider call, so nothing of it reached the provider."""
        refusal = decisions.refusal(command_id, idempotency_mismatch(KEY_MADE_ANOTHER_REQUEST).body()["error"])
        try:
            added = await self._streams.append_all(transaction_id, [refusal], recorded[-1].version, metadata())
        except WrongExpectedVersion:  # another delivery took it over meanwhile: it answers
            raise in_progress() from None
        return [*recorded, *added]

    async def _prepare_claims(self, provider: PaymentProvider, operation: Operation) -> bool:
        """Before a re-drive (never a first attempt: the caller asks only then): catch the index up when it is a
        payment whose provider may ask `claims` (Stripe: its key may be forgotten by the end of the call), outside
        the provider call. The first read of the whole store then never runs inside the provider's per-attempt
        timeout, and a store that cannot be read fails here, as the store's unavailability, before the provider is
        asked anything. Any other re-drive reads nothing. True when the re-drive may look up (and then adopt or
        create)."""
        if operation.kind is not OperationKind.PAYMENT:
            return False
        if not isinstance(provider, AsksClaims) or not provider.asks_claims(operation.requested_at, self._timeout_s):
            return False
        await self._index.catch_up()
        return True

    async def _start_redrive(
        self,
        transaction_id: str,
        command_id: str,
        recorded: list[RecordedEvent],
        transaction: Transaction,
        metadata: Callable[[], Mapping[str, Any]],
    ) -> tuple[list[RecordedEvent], Transaction]:
        """Record that a re-drive that may adopt or create the payment starts (`PaymentRedriveStarted`), at the
        version read: an operator's decision appended meanwhile is found here (the operation finished: the provider
        is not asked), and one read before this is refused while the re-drive is under way (domain.resolution),
        instead of being recorded while the re-drive moves money that its outcome, appended after, would then drop.
        Only such re-drives (a day old at least) append it: the charge path is unchanged."""
        for _ in range(MAX_APPEND_RACES):
            operation = transaction.operations[command_id]
            if operation.finished:
                return recorded, transaction
            started = decisions.redrive_started(operation)
            try:
                appended = await self._streams.append_all(transaction_id, [started], transaction.version, metadata())
            except WrongExpectedVersion:
                recorded, reloaded = await self._streams.load(transaction_id)
                assert reloaded is not None
                transaction = reloaded
                continue
            recorded = [*recorded, *appended]
            folded = Transaction.from_events(recorded)
            assert folded is not None
            return recorded, folded
        raise RuntimeError(f"transaction {transaction_id}: too many concurrent appends; giving up for a redelivery")

    async def drive(
        self,
        transaction_id: str,
        command_id: str,
        metadata: Callable[[], Mapping[str, Any]],
        method: PaymentMethod | None = None,
        known: list[RecordedEvent] | None = None,
        first_attempt: bool = False,
    ) -> list[RecordedEvent]:
        """The stream's events once the operation has an outcome (or a recorded retryable failure). `known`: the
        whole stream as the caller just wrote it (saves a read; an append race still reloads). `first_attempt`:
        the caller has just recorded the request, so nothing of it can have reached the provider before."""
        if known:
            recorded, transaction = known, Transaction.from_events(known)
        else:
            recorded, transaction = await self._streams.load(transaction_id)
        if transaction is None:
            raise LookupError(f"no transaction {transaction_id}")
        operation = transaction.operations[command_id]
        if operation.finished:
            return recorded
        if operation.kind is OperationKind.PAYMENT and await self._guard.claimed_before(
            command_id, recorded[0].position
        ):
            return await self._refuse_reused_key(transaction_id, command_id, recorded, metadata)
        provider = self.provider_for(transaction)
        if not first_attempt and await self._prepare_claims(provider, operation):
            recorded, transaction = await self._start_redrive(
                transaction_id, command_id, recorded, transaction, metadata
            )
            operation = transaction.operations[command_id]
            if operation.finished:  # an operator decided meanwhile: nothing to ask the provider
                return recorded
        result = await call_provider(
            provider, transaction, operation, method, self._timeout_s, first_attempt, self._claims_on(transaction)
        )
        # INFO only when the call failed: one INFO line per successful call cost ~3 % of a charge's CPU.
        level = logging.INFO if result.outcome in FAILED_OUTCOMES else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "provider answered",
                extra={"provider": provider.name, "operation": operation.kind.value, "outcome": result.outcome.value},
            )
        faults.reached("after_provider_call")
        decide = OUTCOME_BY_KIND[operation.kind]
        for _ in range(MAX_APPEND_RACES):
            if transaction.operations[command_id].finished:  # another delivery finished it meanwhile
                return recorded
            events = decide(transaction, command_id, result)
            try:
                appended = await self._streams.append_all(transaction_id, events, transaction.version, metadata())
            except WrongExpectedVersion:
                recorded, reloaded = await self._streams.load(transaction_id)
                assert reloaded is not None
                transaction = reloaded
                continue
            faults.reached("after_outcome_recorded")
            return [*recorded, *appended]  # the stream at `transaction.version` plus the events just appended
        raise RuntimeError(f"transaction {transaction_id}: too many concurrent appends; giving up for a redelivery")
