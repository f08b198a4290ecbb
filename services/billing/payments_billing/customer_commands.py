"""The customer commands: create, get, update (merge), delete. Each loads the stream, asks the domain, calls the
customer's provider with the command id as idempotency key, appends what was decided and replies. A delete first
cancels the customer's subscriptions that are not canceled yet, as Stripe does (Authorize.net refuses to delete a
profile that an active subscription bills; one that this system does not know still billing it makes the deletion a
409 and the customer stays)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from payments_shared import faults
from payments_shared.eventstore.port import WrongExpectedVersion
from payments_shared.messages import Reply
from payments_shared.providers.port import CustomerRequest, ProviderResult

from payments_billing import customer as domain
from payments_billing import serialized, subscription_commands
from payments_billing.context import BillingContext, Call, payment_method, string_map
from payments_billing.events import DomainEvent
from payments_billing.journal import storable
from payments_billing.outcomes import require_deleted, require_success
from payments_billing.pending import PendingChange
from payments_billing.references import Linked, link
from payments_billing.serialized import ChangeKind, UpdatedObject
from payments_billing.streams import Loaded

CUSTOMER_FIELDS = ("email", "name", "phone", "description")

AFTER_SUBSCRIPTIONS_CANCELED = "after_customer_subscriptions_canceled"
AFTER_CUSTOMER_CALL = "after_customer_provider_call"  # fault point: the provider made the customer, nothing recorded
AFTER_DELETE_CALL = "after_customer_delete_call"  # fault point: the provider deleted the customer, nothing recorded


async def load(context: BillingContext, customer_id: str) -> Loaded[domain.Customer]:
    return await context.streams.load(domain.stream_name(customer_id), domain.fold)


def default_method(result: ProviderResult, requested: Any) -> str | None:
    """The provider's id for the default payment method (a payment profile id), else the token given."""
    chosen = result.details.get("default_payment_method")
    if isinstance(chosen, str):
        return chosen
    return requested if isinstance(requested, str) else None


def customer_request(call: Call) -> CustomerRequest:
    return replace(request_of(call.command_id, call.payload), accepted_at=call.accepted)


CLEARABLE = ("name", "phone", "description")  # the customer fields a PUT may set to null


def request_of(command_id: str, payload: Mapping[str, Any]) -> CustomerRequest:
    return CustomerRequest(
        idempotency_key=command_id,
        email=payload.get("email"),
        name=payload.get("name"),
        phone=payload.get("phone"),
        description=payload.get("description"),
        metadata=string_map(payload.get("metadata")),
        payment_method=payment_method(payload.get("payment_method")),
        cleared=frozenset(name for name in CLEARABLE if name in payload and payload[name] is None),
    )


async def create_customer(context: BillingContext, call: Call) -> Reply:
    customer_id = str(call.payload["customer_id"])
    loaded = await load(context, customer_id)
    if loaded.applied(call.command_id) and loaded.state is not None:
        return Reply(status=201, body=loaded.state.to_api())
    provider = context.provider(call.payload.get("provider"))
    made = await provider.create_customer(customer_request(call))
    faults.reached(AFTER_CUSTOMER_CALL)
    result = require_success(provider.name, made)
    new = domain.NewCustomer(
        id=customer_id,
        workspace=call.workspace,
        email=call.payload.get("email"),
        name=call.payload.get("name"),
        phone=call.payload.get("phone"),
        description=call.payload.get("description"),
        metadata=string_map(call.payload.get("metadata")),
        provider=provider.name,
        provider_reference=result.reference,
        default_payment_method=default_method(result, call.payload.get("payment_method")),
    )
    event = domain.decide_create(loaded.state, new, call.now)
    if result.reference:
        linked = Linked(customer_id, call.workspace)
        await link(context.streams, "customer", provider.name, result.reference, linked, call.origin)
    await context.streams.append(domain.stream_name(customer_id), event, loaded.version, call.origin)
    created = domain.evolve(None, event)
    assert created is not None
    return Reply(status=201, body=created.to_api())


async def get_customer(context: BillingContext, call: Call) -> Reply:
    loaded = await load(context, str(call.payload["customer_id"]))
    return Reply(status=200, body=domain.visible(loaded.state, call.workspace).to_api())


def changes_of(payload: Mapping[str, Any], default_payment_method: str | None) -> domain.CustomerChanges:
    return domain.CustomerChanges(
        fields={name: payload[name] for name in CUSTOMER_FIELDS if name in payload},
        metadata=string_map(payload["metadata"]) if "metadata" in payload else None,
        provider=payload.get("provider"),
        default_payment_method=default_payment_method,
    )


def requested_update(state: domain.Customer | None, call: Call) -> DomainEvent:
    """The update recorded as requested (4xx before any provider call). The request keeps the payload as the
    journal does: an Accept.js nonce's value is not stored (the delivery that has it sends it)."""
    parameters = storable(call.origin.command)["payload"]
    pending = PendingChange(call.command_id, call.now, parameters, {})
    return domain.decide_request_update(state, call.workspace, changes_of(dict(call.payload), None), pending)


def _updates(context: BillingContext, customer_id: str) -> ChangeKind[domain.Customer]:
    async def call_provider(
        state: domain.Customer, pending: PendingChange, call: Call, first_attempt: bool
    ) -> ProviderResult:
        payload = call.payload if pending.command_id == call.command_id else pending.parameters
        request = request_of(pending.command_id, payload)
        if not first_attempt:  # an earlier attempt may have added the payment method it carries
            request = replace(request, recorded_payment_methods=state.payment_methods)
        return await context.provider(state.provider).update_customer(state.provider_reference or "", request)

    def succeeded(state: domain.Customer, pending: PendingChange, result: ProviderResult, call: Call) -> DomainEvent:
        payload = dict(pending.parameters)
        requested_method = payload.get("payment_method")
        chosen = default_method(result, requested_method) if requested_method is not None else None
        return domain.decide_update(state, state.workspace, changes_of(payload, chosen), call.now, pending.command_id)

    customer = UpdatedObject(
        domain.stream_name(customer_id), domain.fold, domain.visible, domain.UPDATED, domain.UPDATE_FAILED
    )
    return serialized.updates(customer, requested_update, call_provider, succeeded)


async def update_customer(context: BillingContext, call: Call) -> Reply:
    """Serialised with every other update of the customer (see `serialized`)."""
    return await serialized.change(context, call, _updates(context, str(call.payload["customer_id"])))


async def delete_customer(context: BillingContext, call: Call) -> Reply:
    """After any update of the customer in progress (`serialized.without_open_change`), so the provider and the
    stream see them in one order. An update requested while the provider deletes gets its outcome first (the
    provider refuses it: the customer is gone), and the deletion is appended after it."""
    customer_id = str(call.payload["customer_id"])
    for _ in range(serialized.MAX_APPEND_RACES):
        loaded = await serialized.without_open_change(context, call, _updates(context, customer_id))
        if loaded.applied(call.command_id):
            return Reply(status=200, body=domain.deleted_reply(customer_id))
        current = domain.visible(loaded.state, call.workspace)
        failed = await _delete_at_provider(context, call, current)
        if failed is not None:  # a subscription's cancel failed: its reply, and the customer stays
            return failed
        event = domain.decide_delete(loaded.state, call.workspace, call.now)
        try:
            await context.streams.append(domain.stream_name(customer_id), event, loaded.version, call.origin)
        except WrongExpectedVersion:
            continue  # an update was requested meanwhile: it ends first (the provider's deletion is kept by key)
        return Reply(status=200, body=domain.deleted_reply(customer_id))
    raise RuntimeError(f"customer {customer_id}: too many concurrent appends; giving up for a redelivery")


async def _delete_at_provider(context: BillingContext, call: Call, current: domain.Customer) -> Reply | None:
    """Cancel the customer's subscriptions, then delete it at its provider (both by the command's id: once); the
    reply of a subscription's cancel that failed, if one did."""
    await _refuse_if_billed_from_elsewhere(context, current)
    failed = await subscription_commands.cancel_all_of_customer(context, call, current)
    if failed is not None:
        return failed
    faults.reached(AFTER_SUBSCRIPTIONS_CANCELED)
    if current.provider_reference:
        provider = context.provider(current.provider)
        deleted = await provider.delete_customer(current.provider_reference, call.command_id)
        faults.reached(AFTER_DELETE_CALL)
        require_deleted(provider.name, deleted)
    return None


async def _refuse_if_billed_from_elsewhere(context: BillingContext, customer: domain.Customer) -> None:
    """A deletion the provider would refuse for a subscription made outside this system (Authorize.net's E00106)
    is refused (409) before any of the customer's own subscriptions is canceled."""
    if not customer.provider_reference:
        return
    ours = await subscription_commands.provider_references(context, customer)
    provider = context.provider(customer.provider)
    require_deleted(provider.name, await provider.check_customer_deletable(customer.provider_reference, ours))
