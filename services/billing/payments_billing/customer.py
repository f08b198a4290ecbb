"""The customer: its fold and the decisions about it (pure: no I/O, the clock and the provider's answers are
inputs).

Stream `customer-{id}`: `CustomerCreated` (the whole customer), `CustomerUpdated` (the changed fields with their
new values; `metadata` already merged), `CustomerDeleted` (the last: an update still open then ends with it, its
outcome unrecorded; its redelivery answers 404). A deleted customer, or one of another workspace, is
"not found" for every command, while its events stay in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from payments_shared.errors import conflict, invalid, not_found
from payments_shared.metadata import merged_metadata, merged_metadata_within_limit
from payments_shared.providers.stripe_redrive import OPERATION_TAG

from payments_billing.events import DomainEvent, StoredEvent, known_changes
from payments_billing.pending import PendingChange, without_finished

CREATED = "CustomerCreated"
UPDATED = "CustomerUpdated"
DELETED = "CustomerDeleted"
# A subscription made for the customer: its deletion cancels the subscriptions listed here first (as Stripe does).
SUBSCRIPTION_ADDED = "CustomerSubscriptionAdded"
UPDATE_REQUESTED = "CustomerUpdateRequested"
UPDATE_FAILED = "CustomerUpdateFailed"

# Fields a PUT may change (besides `metadata`, merged, and `payment_method`, which sets the default).
PLAIN_FIELDS = ("email", "name", "phone", "description")
# Metadata keys this system writes on the provider's copy of a customer (Stripe: the re-drive tag), never the
# client's: a provider's report leaves them out, and a client's own key of that name keeps its value here.
PROVIDER_ONLY_KEYS = frozenset({OPERATION_TAG})


def _with_method(methods: frozenset[str], method: Any) -> frozenset[str]:
    return methods | {method} if isinstance(method, str) else methods


def stream_name(customer_id: str) -> str:
    return f"customer-{customer_id}"


@dataclass(frozen=True)
class Customer:
    id: str
    workspace: str
    email: str | None
    provider: str
    created_at: str
    updated_at: str
    name: str | None = None
    phone: str | None = None
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    provider_reference: str | None = None
    default_payment_method: str | None = None
    deleted: bool = False
    provider_event_at: str | None = None  # the provider's time of the latest report applied (not shown)
    subscription_ids: tuple[str, ...] = ()  # not shown
    pending_update: PendingChange | None = None  # an update requested, its outcome not recorded yet (not shown)
    payment_methods: frozenset[str] = frozenset()  # every default payment method the stream recorded (not shown)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "customer",
            "email": self.email,
            "name": self.name,
            "phone": self.phone,
            "description": self.description,
            "metadata": dict(self.metadata),
            "provider": self.provider,
            "provider_reference": self.provider_reference,
            "default_payment_method": self.default_payment_method,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class NewCustomer:
    """What a create command asks for, with what the provider answered."""

    id: str
    workspace: str
    email: str | None
    provider: str
    name: str | None = None
    phone: str | None = None
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    provider_reference: str | None = None
    default_payment_method: str | None = None


@dataclass(frozen=True)
class CustomerChanges:
    """A PUT: only the fields present in the request (`fields` holds email/name/phone/description)."""

    fields: Mapping[str, str | None] = field(default_factory=dict)
    metadata: Mapping[str, str] | None = None  # merged; a key set to "" is removed (as Stripe does)
    provider: str | None = None  # may only repeat the customer's provider
    default_payment_method: str | None = None


def fold(events: Iterable[StoredEvent]) -> Customer | None:
    customer: Customer | None = None
    for event in events:
        customer = evolve(customer, event)
    return customer


def evolve(customer: Customer | None, event: StoredEvent) -> Customer | None:
    data = event.data
    if event.type == CREATED:
        return Customer(
            id=data["id"],
            workspace=data["workspace"],
            email=data.get("email"),
            name=data.get("name"),
            phone=data.get("phone"),
            description=data.get("description"),
            metadata=dict(data.get("metadata") or {}),
            provider=data["provider"],
            provider_reference=data.get("provider_reference"),
            default_payment_method=data.get("default_payment_method"),
            created_at=data["created_at"],
            updated_at=data["created_at"],
            payment_methods=_with_method(frozenset(), data.get("default_payment_method")),
        )
    if customer is None:
        return None
    if event.type == UPDATED:
        changes = known_changes(customer, data.get("changes"))
        reported_at = data.get("provider_created", customer.provider_event_at)
        updated = replace(customer, **changes, updated_at=data["updated_at"], provider_event_at=reported_at)
        methods = _with_method(customer.payment_methods, changes.get("default_payment_method"))
        return without_finished(replace(updated, payment_methods=methods), data)
    if event.type == UPDATE_REQUESTED:
        return replace(customer, pending_update=PendingChange.of(data))
    if event.type == UPDATE_FAILED:
        return without_finished(customer, data)
    if event.type == DELETED:
        return replace(customer, deleted=True, updated_at=data["deleted_at"], pending_update=None)
    if event.type == SUBSCRIPTION_ADDED:
        return replace(customer, subscription_ids=(*customer.subscription_ids, str(data["subscription_id"])))
    return customer  # an event type this version does not know changes nothing


def visible(customer: Customer | None, workspace: str) -> Customer:
    """The customer as `workspace` may see it; a deleted one or another workspace's is "not found"."""
    if customer is None or customer.deleted or customer.workspace != workspace:
        raise not_found("customer")
    return customer


def decide_create(existing: Customer | None, new: NewCustomer, now: str) -> DomainEvent:
    if existing is not None:
        raise conflict(f"Customer {new.id} already exists.")
    data: dict[str, Any] = {
        "id": new.id,
        "workspace": new.workspace,
        "email": new.email,
        "name": new.name,
        "phone": new.phone,
        "description": new.description,
        "metadata": merged_metadata({}, new.metadata),  # "" sets no key, as at Stripe
        "provider": new.provider,
        "provider_reference": new.provider_reference,
        "default_payment_method": new.default_payment_method,
        "created_at": now,
    }
    return DomainEvent(CREATED, data)


def check_update(customer: Customer | None, workspace: str, changes: CustomerChanges) -> Customer:
    """Refuse what no provider call should be made for: an unknown customer, a change of provider, metadata that
    would hold too many keys once merged."""
    current = visible(customer, workspace)
    if changes.provider is not None and changes.provider != current.provider:
        raise invalid("A customer's provider cannot be changed.", param="provider")
    if changes.metadata is not None:
        merged_metadata_within_limit(current.metadata, changes.metadata)
    return current


def decide_request_update(
    customer: Customer | None, workspace: str, changes: CustomerChanges, pending: PendingChange
) -> DomainEvent:
    """Record an update as requested before the provider is asked: one at a time (409 while another is open)."""
    current = check_update(customer, workspace, changes)
    if current.pending_update is not None:
        raise conflict("Another update of this customer is in progress; retry.", code="operation_in_progress")
    return DomainEvent(UPDATE_REQUESTED, pending.to_data())


def decide_update(
    customer: Customer | None, workspace: str, changes: CustomerChanges, now: str, command_id: str | None = None
) -> DomainEvent:
    """The update with the provider's answer; `command_id` names the request it finishes."""
    current = check_update(customer, workspace, changes)
    new_values: dict[str, Any] = {name: value for name, value in changes.fields.items() if name in PLAIN_FIELDS}
    if changes.metadata is not None:
        new_values["metadata"] = merged_metadata(current.metadata, changes.metadata)
    if changes.default_payment_method is not None:
        new_values["default_payment_method"] = changes.default_payment_method
    finished = {"command_id": command_id} if command_id else {}
    return DomainEvent(UPDATED, {"changes": new_values, "updated_at": now, **finished})


def decide_delete(customer: Customer | None, workspace: str, now: str) -> DomainEvent:
    visible(customer, workspace)
    return DomainEvent(DELETED, {"deleted_at": now})


def decide_subscription_added(customer: Customer | None, workspace: str, subscription_id: str) -> DomainEvent | None:
    """List a subscription on its customer (not found once the customer is deleted); None when listed already."""
    current = visible(customer, workspace)
    if subscription_id in current.subscription_ids:
        return None
    return DomainEvent(SUBSCRIPTION_ADDED, {"subscription_id": subscription_id})


def decide_reported_deletion(customer: Customer | None, workspace: str, now: str) -> DomainEvent | None:
    """The provider reports the customer deleted (a webhook): recorded once, ignored when already deleted."""
    if customer is None or customer.workspace != workspace or customer.deleted:
        return None
    return DomainEvent(DELETED, {"deleted_at": now, "reported_by_provider": True})


def _text_or_none(value: Any) -> bool:
    """A provider's payload is JSON from outside: a field that should hold a text may hold anything."""
    return value is None or isinstance(value, str)


def reported_metadata(current: Mapping[str, str], reported: Mapping[str, str], held_now: bool) -> dict[str, str]:
    """The metadata after a provider's report of the customer's whole metadata. Re-read from the provider
    (`held_now`), it is the metadata: a key deleted there is deleted here. An event's payload alone may predate a
    PUT of ours (no provider timestamp orders the two), so it is merged as a PUT is: it cannot remove a key the PUT
    added."""
    if not held_now:
        return merged_metadata(current, reported)
    kept = {key: value for key, value in current.items() if key in PROVIDER_ONLY_KEYS}
    return {**merged_metadata({}, reported), **kept}


def decide_reported_update(
    customer: Customer | None,
    workspace: str,
    reported: Mapping[str, Any],
    provider_created: str,
    now: str,
    *,
    held_now: bool = False,
) -> DomainEvent | None:
    """The provider reports the customer changed (a webhook, or its re-fetched profile): its email, name, phone,
    description and metadata (see `reported_metadata`). None when there is nothing to record: an unknown or deleted
    customer, a report older than one already applied (reports apply in the provider's order), no change."""
    if customer is None or customer.workspace != workspace or customer.deleted:
        return None
    if customer.provider_event_at is not None and provider_created < customer.provider_event_at:
        return None
    new_values: dict[str, Any] = {
        name: reported[name]
        for name in PLAIN_FIELDS
        if name in reported and _text_or_none(reported[name]) and reported[name] != getattr(customer, name)
    }
    metadata = reported.get("metadata")
    if isinstance(metadata, Mapping):
        after = reported_metadata(customer.metadata, metadata, held_now)
        if after != dict(customer.metadata):
            new_values["metadata"] = after
    if not new_values:
        return None
    return DomainEvent(UPDATED, {"changes": new_values, "updated_at": now, "provider_created": provider_created})


def authnet_profile_changes(profile: Mapping[str, Any], customer: Customer | None) -> dict[str, Any]:
    """What an Authorize.net customer profile (re-fetched: its webhook names only the profile id) reports about
    our customer. A profile holds an email and a description; the adapter writes the name into the description
    when there is no description, so that value is not a new description."""
    changes: dict[str, Any] = {}
    if profile.get("email"):
        changes["email"] = profile["email"]
    description = profile.get("description")
    name_fallback = customer is not None and customer.description is None and description == customer.name
    if description and not name_fallback:
        changes["description"] = description
    return changes


def deleted_reply(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "object": "customer", "deleted": True}
