"""`payments-ops resolve TRANSACTION_ID (--intent pi_… | --not-made) --operator NAME [--note TEXT]`: record an
operator's decision on a payment whose Stripe re-drive was left unresolved (several PaymentIntents may be its
earlier attempt's: `ProviderCallFailed` with `unresolved` in its events, the transaction `pending`), or an
Authorize.net payment its re-drive could not find (the candidate is its invoice number: `--not-made` only).

`--intent` adopts one of those candidates: the PaymentIntent is read from Stripe (STRIPE_API_KEY, STRIPE_API_BASE
as the workers have them) and its state is the payment's outcome. `--not-made` says none of them is this payment's:
the payment fails (`payment_not_made`), nothing is created (why: payments_transactions.domain.resolution). The
decision and the outcome are appended together to the transaction's stream, at the version read (decided again on a
concurrent append). Running it again with the same decision changes nothing; a transaction not awaiting a decision,
an intent that was not a candidate, or one another transaction recorded is refused (status 1, nothing appended), and
so is any decision while a re-drive of the payment is under way (`redrive_under_way`: run it again once that
re-drive has answered).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from payments_shared.eventstore.port import EventStore, WrongExpectedVersion
from payments_shared.messages import Command, event_metadata
from payments_shared.providers.port import ProviderResult
from payments_shared.providers.stripe import StripeProvider
from payments_shared.settings import ProviderSettings, load
from payments_transactions.domain import resolution as rules
from payments_transactions.domain.decisions import DomainError
from payments_transactions.domain.resolution import Choice, Resolution
from payments_transactions.provider_index import ProviderIndex
from payments_transactions.streams import TransactionStreams

from payments_ops import stores

MAX_RACES: Final = 20
OPERATOR_ACTOR_PREFIX: Final = "operator:"


class MadePayments(Protocol):
    async def payment_made(self, reference: str) -> ProviderResult: ...

    async def close(self) -> None: ...


def register(commands: Any) -> None:
    resolve = commands.add_parser(
        "resolve", help="decide a payment whose Stripe re-drive was left unresolved (several candidate intents)"
    )
    resolve.add_argument("transaction_id", metavar="TRANSACTION_ID")
    choice = resolve.add_mutually_exclusive_group(required=True)
    choice.add_argument("--intent", metavar="PAYMENT_INTENT", help="adopt this candidate PaymentIntent (pi_…)")
    choice.add_argument(
        "--not-made", action="store_true", help="none of the candidates is this payment's: it fails, nothing is made"
    )
    resolve.add_argument("--operator", required=True, type=operator_name, help="who decides (recorded)")
    resolve.add_argument("--note", default=None, help="why (recorded)")
    resolve.set_defaults(run=run)


def operator_name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must name the operator")
    return value.strip()


def run(arguments: argparse.Namespace) -> int:
    choice = Choice.ADOPT if arguments.intent else Choice.NOT_MADE
    resolution = Resolution(arguments.operator, choice, arguments.intent, arguments.note)
    try:
        print(asyncio.run(resolve_from_settings(arguments.transaction_id, resolution)))
    except DomainError as refused:
        print(f"payments-ops resolve: refused ({refused.code}): {refused.message}", file=sys.stderr)
        return 1
    return 0


async def resolve_from_settings(transaction_id: str, resolution: Resolution) -> str:
    async with stores.event_store(stores.settings()) as store:
        return await resolve(store, transaction_id, resolution, _stripe)


def _stripe(provider: str) -> MadePayments:
    if provider != "stripe":
        raise DomainError(
            f"Only a Stripe candidate can be adopted; this payment's provider is {provider} (--not-made, or let the "
            "re-drive find it)."
        )
    return StripeProvider.from_settings(load(ProviderSettings))


async def resolve(
    store: EventStore,
    transaction_id: str,
    resolution: Resolution,
    providers: Callable[[str], MadePayments] = _stripe,
) -> str:
    """Record the decision (and the outcome it leads to); what was done, in one line. `providers`: the provider
    adapter by name (only asked when adopting)."""
    streams = TransactionStreams(store)
    _, transaction = await streams.load(transaction_id)
    if transaction is None:
        raise DomainError(f"No transaction {transaction_id}.", code="not_found")
    if rules.already_decided(transaction, resolution):
        return f"{transaction_id}: already resolved so ({_described(resolution)}); nothing appended"
    owner = None
    adopted = None
    if resolution.reference is not None:
        owners = await ProviderIndex(store).owners(transaction.provider, [resolution.reference])
        owner = owners.get(resolution.reference)
    rules.check(transaction, resolution, owner, datetime.now(UTC))  # refused before Stripe is asked
    if resolution.reference is not None:
        provider: MadePayments = providers(transaction.provider)
        try:
            adopted = await provider.payment_made(resolution.reference)
        finally:
            await provider.close()
    command = Command(
        type="resolve_payment",
        workspace=transaction.workspace,
        actor=f"{OPERATOR_ACTOR_PREFIX}{resolution.operator}",
        command_id=str(uuid.uuid4()),
    )
    for _ in range(MAX_RACES):
        events = rules.resolve(transaction, resolution, owner, adopted, datetime.now(UTC))
        if not events:
            return f"{transaction_id}: already resolved so ({_described(resolution)}); nothing appended"
        metadata = event_metadata(command, command.command_id, command.command_id)
        try:
            await streams.append(transaction_id, events, transaction.version, metadata)
        except WrongExpectedVersion:
            _, reloaded = await streams.load(transaction_id)
            assert reloaded is not None
            transaction = reloaded
            continue
        return f"{transaction_id}: {_described(resolution)}; recorded {events[-1].type}"
    raise RuntimeError(f"transaction {transaction_id} kept changing; nothing appended, try again")


def _described(resolution: Resolution) -> str:
    if resolution.choice is Choice.ADOPT:
        return f"adopted {resolution.reference}"
    return "not made: the payment fails"
