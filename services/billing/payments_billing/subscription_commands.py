"""The subscription commands: create (on the customer's provider), get, update, cancel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from payments_shared import faults
from payments_shared.errors import ApiError, invalid, not_found
from payments_shared.messages import Reply
from payments_shared.metadata import merged_metadata_within_limit
from payments_shared.providers.port import Outcome, ProviderResult, SubscriptionChange, SubscriptionRequest
from payments_shared.timestamps import api_timestamp, unix_seconds_iso

from payments_billing import customer as customers
from payments_billing import customer_subscriptions, periods, serialized
from payments_billing import subscription as domain
from payments_billing.context import BillingContext, Call, payment_method, string_map
from payments_billing.events import DomainEvent
from payments_billing.outcomes import provider_error, starts_incomplete
from payments_billing.pending import PendingChange
from payments_billing.references import Linked, link
from payments_billing.serialized import ChangeKind, UpdatedObject
from payments_billing.streams import Loaded
from payments_billing.times import parse_iso, reported_periods

PRICE_FIELDS = ("amount", "currency", "interval", "interval_count")


def price_details(details: Mapping[str, Any]) -> dict[str, Any]:
    return {name: details[name] for name in PRICE_FIELDS if details.get(name) is not None}


AFTER_CANCEL_CALL = "after_subscription_cancel_call"
AFTER_SUBSCRIPTION_CALL = "after_subscription_provider_call"  # the provider made it, nothing recorded yet
AFTER_SUBSCRIPTION_RECORDED = "after_subscription_recorded"
ENDED_STEP = "ended_at_provider"  # the second event of a creation that adopted a subscription ended since


async def load(context: BillingContext, subscription_id: str) -> Loaded[domain.Subscription]:
    return await context.streams.load(domain.stream_name(subscription_id), domain.fold)


async def customer_of(context: BillingContext, call: Call, deleted_too: bool = False) -> customers.Customer:
    """The subscription's customer; with `deleted_too`, one of the workspace deleted since is returned as well."""
    customer_id = str(call.payload["customer_id"])
    loaded = await context.streams.load(customers.stream_name(customer_id), customers.fold)
    state = loaded.state
    if deleted_too and state is not None and state.deleted and state.workspace == call.workspace:
        return state
    try:
        return customers.visible(state, call.workspace)
    except ApiError as error:
        error.param = "customer_id"
        raise


def customer_gone() -> ApiError:
    return not_found("customer", param="customer_id")


def initial_status(result: ProviderResult, trial_days: int | None, provider: str) -> str:
    if starts_incomplete(result):
        return domain.INCOMPLETE
    if result.outcome is not Outcome.APPROVED or result.details.get("unsupported"):
        raise provider_error(provider, result)
    reported = result.details.get("status")
    if isinstance(reported, str):
        return reported
    return domain.TRIALING if trial_days else domain.ACTIVE


def status_as_made(result: ProviderResult, trial_days: int | None) -> str:
    """The status a subscription the provider has ended since was made with: one that expired with its first
    invoice unpaid (Stripe's `incomplete_expired`) started incomplete and never billed; any other started as asked."""
    if result.details.get("stripe_status") == "incomplete_expired":
        return domain.INCOMPLETE
    return domain.TRIALING if trial_days else domain.ACTIVE


def may_have_made(result: ProviderResult) -> bool:
    """The provider made the subscription, or may have (its answer unknown: the command stays open, asked again)."""
    if result.outcome in (Outcome.RETRYABLE, Outcome.UNAVAILABLE):
        return True
    return result.reference is not None and (result.outcome is Outcome.APPROVED or starts_incomplete(result))


def check_interval(payload: Mapping[str, Any]) -> None:
    """Stripe's limit: a billing interval of at most three years (a price brings its own interval)."""
    if payload.get("price") is not None:
        return
    interval, count = str(payload.get("interval")), int(payload.get("interval_count") or 1)
    if not periods.valid_interval_count(interval, count):
        limit = periods.MAX_INTERVAL_COUNT.get(interval)
        raise invalid(
            f"interval_count must be between 1 and {limit} for {interval}: at most three years.", "interval_count"
        )


def subscription_request(call: Call, fixed: domain.CreationParameters) -> SubscriptionRequest:
    payload = call.payload
    method = payment_method(payload.get("payment_method")) or fixed.default_payment_method
    trial_days = payload.get("trial_days")
    if method is None and not trial_days:
        raise invalid("The customer has no default payment method: give payment_method.", param="payment_method")
    check_interval(payload)
    if payload.get("price") is None:  # a price's amount is the provider's, known once it answers
        domain.check_period_amount(int(payload.get("amount") or 0), int(payload.get("quantity") or 1), "quantity")
    return SubscriptionRequest(
        idempotency_key=call.command_id,
        customer_reference=fixed.customer_reference,
        amount=int(payload.get("amount") or 0),
        currency=str(payload.get("currency") or ""),
        interval=str(payload.get("interval") or ""),
        interval_count=int(payload.get("interval_count") or 1),
        quantity=int(payload.get("quantity") or 1),
        price=payload.get("price"),
        trial_days=trial_days,
        payment_method=method,
        metadata=string_map(payload.get("metadata")),
        accepted_at=call.accepted,
    )


async def requested_creation(context: BillingContext, subscription_id: str) -> Loaded[domain.CreationParameters]:
    return await context.streams.load(domain.creation_stream(subscription_id), domain.creation_parameters)


async def fixed_request(context: BillingContext, call: Call, customer: customers.Customer) -> SubscriptionRequest:
    """The request as its first attempt made it: what the customer's state decided of it is recorded before the
    provider is first asked, and read back by every re-drive (a crash's, a 503's), so the provider gets the same
    parameters under the same key even when the customer's default payment method changed meanwhile. 4xx before
    anything is recorded."""
    subscription_id = str(call.payload["subscription_id"])
    recorded = await requested_creation(context, subscription_id)
    if recorded.state is None:
        own_method = call.payload.get("payment_method") is not None
        fixed = domain.CreationParameters(
            customer.provider_reference, None if own_method else customer.default_payment_method
        )
        subscription_request(call, fixed)  # refused (4xx) before anything is recorded
        event = domain.decide_request_creation(fixed)
        await context.streams.append(domain.creation_stream(subscription_id), event, recorded.version, call.origin)
        # Read back: an attempt that raced this one may have recorded its own first (the same event id).
        recorded = await requested_creation(context, subscription_id)
    assert recorded.state is not None
    return subscription_request(call, recorded.state)


def new_subscription(
    call: Call, customer: customers.Customer, request: SubscriptionRequest, result: ProviderResult, status: str
) -> domain.NewSubscription:
    price = price_details(result.details)
    amount = int(price.get("amount", request.amount))
    currency = str(price.get("currency", request.currency))
    interval = str(price.get("interval", request.interval))
    interval_count = int(price.get("interval_count", request.interval_count))
    period = periods.first_period(parse_iso(call.now), interval, interval_count, request.trial_days)
    bounds = {"current_period_start": api_timestamp(period.start), "current_period_end": api_timestamp(period.end)}
    bounds.update(reported_periods(result.details))
    return domain.NewSubscription(
        id=str(call.payload["subscription_id"]),
        workspace=call.workspace,
        customer_id=customer.id,
        status=status,
        amount=amount,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        quantity=request.quantity,
        provider=customer.provider,
        current_period_start=bounds["current_period_start"],
        current_period_end=bounds["current_period_end"],
        price=request.price,
        trial_end=bounds["current_period_end"] if status == domain.TRIALING else None,
        provider_reference=result.reference,
        metadata=request.metadata,
    )


async def create_subscription(context: BillingContext, call: Call) -> Reply:
    subscription_id = str(call.payload["subscription_id"])
    loaded = await load(context, subscription_id)
    created = loaded.state if loaded.applied(call.command_id) else None
    if created is None:
        created = await _create(context, call, subscription_id, loaded)
    if not await customer_subscriptions.add(
        context.streams, created.customer_id, call.workspace, subscription_id, call.origin
    ):
        failed = await _undo_creation(context, call, subscription_id)
        if failed is not None:
            return failed
        raise customer_gone()
    return Reply(status=201, body=created.to_api())


async def _create(
    context: BillingContext, call: Call, subscription_id: str, loaded: Loaded[domain.Subscription]
) -> domain.Subscription:
    # Once the request is recorded the provider may have made the subscription, whatever happened to the customer
    # since: only the provider can say (asked again under the same key), and what it made is recorded, then undone.
    requested = (await requested_creation(context, subscription_id)).state is not None
    customer = await customer_of(context, call, deleted_too=requested)
    request = await fixed_request(context, call, customer)
    provider = context.provider(customer.provider)
    result = await provider.create_subscription(request)
    faults.reached(AFTER_SUBSCRIPTION_CALL)
    if not may_have_made(result) and (customer.deleted or await _deleted_since(context, call)):
        raise customer_gone()
    status = initial_status(result, request.trial_days, provider.name)
    # Found a day later (Stripe forgot the key) and ended at Stripe since: it is recorded as it was made. A deleted
    # customer's is then canceled here by the undo, as a re-drive within the day records Stripe's replayed answer;
    # any other is recorded canceled as Stripe reports it (nothing left to cancel there).
    ended = status == domain.CANCELED_STATUS
    if ended:
        status = status_as_made(result, request.trial_days)
    event = domain.decide_create(loaded.state, new_subscription(call, customer, request, result, status), call.now)
    events = [(event, "")]
    if ended and not customer.deleted:
        events.append((ended_at_provider(domain.evolve(None, event), result, call), ENDED_STEP))
    if result.reference:
        linked = Linked(subscription_id, call.workspace)
        await link(context.streams, "subscription", provider.name, result.reference, linked, call.origin)
    await context.streams.append_all(domain.stream_name(subscription_id), events, loaded.version, call.origin)
    faults.reached(AFTER_SUBSCRIPTION_RECORDED)
    created: domain.Subscription | None = None
    for recorded, _ in events:
        created = domain.evolve(created, recorded)
    assert created is not None
    return created


async def _deleted_since(context: BillingContext, call: Call) -> bool:
    """Whether the customer, alive when read, was deleted since: a refusal of its creation (Stripe's "no such
    customer") then lost the race to the deletion, whose 404 is the answer."""
    return (await customer_of(context, call, deleted_too=True)).deleted


def ended_at_provider(made: domain.Subscription | None, result: ProviderResult, call: Call) -> DomainEvent:
    """The cancellation of an adopted subscription the provider shows ended, as its webhook would report it."""
    provider_created = unix_seconds_iso(result.details.get("canceled_at")) or call.now
    reported = {"status": domain.CANCELED_STATUS}
    ended = domain.decide_reported(made, call.workspace, reported, provider_created, call.now)
    assert ended is not None  # a subscription just made is not canceled yet
    return ended


async def _undo_creation(context: BillingContext, call: Call, subscription_id: str) -> Reply | None:
    """The customer was deleted while the provider made this subscription: cancel it there and record that (the
    history stays); the creation answers the customer's 404."""
    return await _cancel_if_live(context, call, subscription_id, f"{call.command_id}:undo")


async def get_subscription(context: BillingContext, call: Call) -> Reply:
    loaded = await load(context, str(call.payload["subscription_id"]))
    return Reply(status=200, body=domain.visible(loaded.state, call.workspace).to_api())


def requested_changes(payload: Mapping[str, Any]) -> dict[str, Any]:
    values = {name: payload[name] for name in ("quantity", "amount", "cancel_at_period_end") if name in payload}
    if "metadata" in payload:
        values["metadata"] = string_map(payload["metadata"])
    if payload.get("price") is not None:
        values["price"] = payload["price"]
    elif payload.get("amount") is not None:
        values["price"] = None  # an amount replaces the price it came from
    return values


def reported_changes(result: ProviderResult) -> dict[str, Any]:
    values = {**price_details(result.details), **reported_periods(result.details)}
    for name in ("status", "cancel_at_period_end"):
        if result.details.get(name) is not None:
            values[name] = result.details[name]
    return values


def check_changed_period_amount(current: domain.Subscription, payload: Mapping[str, Any]) -> None:
    """Before the provider is asked: what a period bills after the change. A new price's amount and currency are
    the provider's: its adapter refuses one in another currency or above the limit before applying anything."""
    if payload.get("price") is not None:
        return
    amount, quantity = payload.get("amount"), payload.get("quantity")
    param = "quantity" if quantity is not None else "amount"
    domain.check_period_amount(int(amount or current.amount), int(quantity or current.quantity), param)


def requested_update(state: domain.Subscription | None, call: Call) -> DomainEvent:
    """The update recorded as requested, with the provider's parameters fixed now (a re-drive sends the same
    ones under the same key); 4xx before any provider call."""
    current = domain.changeable(state, call.workspace, domain.changes_metadata_only(call.payload))
    payload = call.payload
    check_changed_period_amount(current, payload)
    metadata = string_map(payload["metadata"]) if "metadata" in payload else None
    if metadata is not None:
        merged_metadata_within_limit(current.metadata, metadata)
    parameters = {
        "quantity": payload.get("quantity"),
        "amount": payload.get("amount"),
        "currency": current.currency,
        "price": payload.get("price"),
        "cancel_at_period_end": payload.get("cancel_at_period_end"),
        "metadata": metadata,
        "current_quantity": current.quantity,
    }
    pending = PendingChange(call.command_id, call.now, parameters, requested_changes(payload))
    return domain.decide_request_update(state, call.workspace, pending)


def requested_cancel(state: domain.Subscription | None, call: Call) -> DomainEvent:
    """The cancel recorded as requested (`at_period_end` as API.md has it: false unless given)."""
    at_period_end = bool(call.payload.get("at_period_end", False))
    return domain.decide_request_cancel(state, call.workspace, at_period_end, call.now, call.command_id)


def _changes(
    context: BillingContext, subscription_id: str, request: Callable[[domain.Subscription | None, Call], DomainEvent]
) -> ChangeKind[domain.Subscription]:
    """The subscription's serialised changes, `request` recording this command's: whichever change is open (an
    update or a cancel, this command's or one a crash left) is driven as what it is."""

    async def call_provider(
        state: domain.Subscription, pending: PendingChange, call: Call, _first_attempt: bool
    ) -> ProviderResult:
        provider = context.provider(state.provider)
        if domain.is_cancel(pending):
            at_period_end = bool(pending.parameters[domain.CANCEL_PARAMETER])
            result = await provider.cancel_subscription(
                state.provider_reference or "", at_period_end, pending.command_id
            )
            faults.reached(AFTER_CANCEL_CALL)
            return result
        change = SubscriptionChange(idempotency_key=pending.command_id, **pending.parameters)
        return await provider.update_subscription(state.provider_reference or "", change)

    def succeeded(
        state: domain.Subscription, pending: PendingChange, result: ProviderResult, call: Call
    ) -> DomainEvent:
        if domain.is_cancel(pending):
            return domain.decide_cancel(state, state.workspace, pending, call.now)
        changes = domain.SubscriptionChanges({**pending.requested, **reported_changes(result)})
        metadata_only = domain.changes_metadata_only(pending.parameters)
        return domain.decide_update(state, state.workspace, changes, call.now, pending.command_id, metadata_only)

    subscription = UpdatedObject(
        domain.stream_name(subscription_id), domain.fold, domain.visible, domain.UPDATED, domain.UPDATE_FAILED
    )
    kind = serialized.updates(subscription, request, call_provider, succeeded)
    return replace(kind, outcome_types=kind.outcome_types | {domain.CANCELED, domain.CANCEL_SCHEDULED})


async def update_subscription(context: BillingContext, call: Call) -> Reply:
    """Serialised with every other update and cancel of the subscription (see `serialized`)."""
    return await serialized.change(
        context, call, _changes(context, str(call.payload["subscription_id"]), requested_update)
    )


async def cancel_subscription(context: BillingContext, call: Call) -> Reply:
    """Serialised like an update: a cancel racing an update reaches the provider and the stream in one order, and
    a provider's report of the cancellation applied before its outcome leaves it a success."""
    return await serialized.change(
        context, call, _changes(context, str(call.payload["subscription_id"]), requested_cancel)
    )


async def provider_references(context: BillingContext, customer: customers.Customer) -> list[str]:
    """The provider's references of the customer's subscriptions made here (any status)."""
    references: list[str] = []
    for subscription_id in customer.subscription_ids:
        state = (await load(context, subscription_id)).state
        if state is not None and state.provider_reference:
            references.append(state.provider_reference)
    return references


async def cancel_all_of_customer(context: BillingContext, call: Call, customer: customers.Customer) -> Reply | None:
    """Before a customer is deleted: each of its subscriptions not canceled yet is canceled now, each with its own
    idempotency key derived from the deleting command. The first cancel that failed gives the reply."""
    for subscription_id in customer.subscription_ids:
        failed = await _cancel_if_live(context, call, subscription_id, f"{call.command_id}:cancel:{subscription_id}")
        if failed is not None:
            return failed
    return None


async def _cancel_if_live(context: BillingContext, call: Call, subscription_id: str, key: str) -> Reply | None:
    """Cancel now, as command `key` of its own, unless it is canceled already (and not by `key`'s open request: a
    crash left it, its redelivery finishes it). Its reply when it failed."""
    loaded = await load(context, subscription_id)
    state = loaded.state
    open_here = state is not None and state.pending_update is not None and state.pending_update.command_id == key
    if state is None or (state.status == domain.CANCELED_STATUS and not open_here):
        return None
    command = call.origin.command.model_copy(
        update={"command_id": key, "payload": {"subscription_id": subscription_id}}
    )
    cancel = Call(replace(call.origin, command=command), call.now, call.accepted_at)
    try:
        reply = await serialized.change(context, cancel, _changes(context, subscription_id, requested_cancel))
    except ApiError as error:
        if error.code == domain.CANCELED_CODE:  # another request (a cancel sent beside) canceled it since the read
            return None
        raise
    return None if reply.status == 200 else reply
