"""What a provider's webhook event says about a customer or subscription (pure): which object, by the provider's
id, and what it reports. Events about anything else are None (recorded by webhook-ingest, ignored here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from payments_shared.providers.stripe_results import object_id, subscription_result

from payments_billing import customer as customers
from payments_billing.times import reported_periods

SUBSCRIPTION = "subscription"
CUSTOMER = "customer"
REPORTED_FIELDS = ("status", "cancel_at_period_end", "quantity")
CUSTOMER_FIELDS = ("email", "name", "phone", "description")
# Invoice outcomes → the subscription's status (Stripe: an unpaid renewal makes it past_due until paid). The
# payload's view: the status Stripe holds is re-read before it is applied (provider_refetch).
INVOICE_STATUS = {
    "invoice.paid": "active",
    "invoice.payment_succeeded": "active",
    "invoice.payment_failed": "past_due",
}


@dataclass(frozen=True)
class Report:
    kind: str  # SUBSCRIPTION | CUSTOMER
    provider: str
    reference: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False
    # The changes are the object as its provider holds it now (re-read), not an event's payload, which may predate
    # a change of ours that no provider timestamp orders it against.
    held_now: bool = False


def interpret(payload: Mapping[str, Any]) -> Report | None:
    provider = str(payload.get("provider") or "")
    event_type = str(payload.get("event_type") or "")
    found = payload.get("object")
    obj: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    if provider == "stripe":
        return _stripe(event_type, obj)
    if provider == "authnet":
        return _authnet(event_type, obj)
    return None


def _stripe(event_type: str, obj: Mapping[str, Any]) -> Report | None:
    if event_type.startswith("customer.subscription.") and isinstance(obj.get("id"), str):
        details = subscription_result(obj).details
        changes = {name: details[name] for name in REPORTED_FIELDS if name in details}
        changes.update(reported_periods(details))
        if event_type == "customer.subscription.deleted":
            changes["status"] = "canceled"
        return Report(SUBSCRIPTION, "stripe", str(obj["id"]), changes)
    if event_type in INVOICE_STATUS and not _asked_nothing(obj):
        reference = _invoice_subscription(obj)
        return Report(SUBSCRIPTION, "stripe", reference, {"status": INVOICE_STATUS[event_type]}) if reference else None
    if event_type == "customer.deleted" and isinstance(obj.get("id"), str):
        return Report(CUSTOMER, "stripe", str(obj["id"]), deleted=True)
    if event_type == "customer.updated" and isinstance(obj.get("id"), str):
        return Report(CUSTOMER, "stripe", str(obj["id"]), stripe_customer_changes(obj))
    return None


def stripe_customer_changes(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The customer's fields as the event's object holds them (the whole object, not only what changed): its whole
    metadata but the keys this system writes at Stripe (`PROVIDER_ONLY_KEYS`: Stripe's copy, not the client's)."""
    changes: dict[str, Any] = {name: customer[name] for name in CUSTOMER_FIELDS if name in customer}
    metadata = customer.get("metadata")
    if isinstance(metadata, Mapping):
        changes["metadata"] = {
            str(key): str(value) for key, value in metadata.items() if key not in customers.PROVIDER_ONLY_KEYS
        }
    return changes


def _asked_nothing(invoice: Mapping[str, Any]) -> bool:
    """An invoice of 0.00 (the one that opens a trial, paid at once): paying it settles nothing, and Stripe
    leaves the subscription's status as it is (`trialing` until the trial ends)."""
    due = invoice.get("amount_due")
    return isinstance(due, int) and not isinstance(due, bool) and due == 0


def _invoice_subscription(invoice: Mapping[str, Any]) -> str | None:
    """The invoice's subscription: `subscription` (older API versions) or `parent.subscription_details`."""
    direct = object_id(invoice.get("subscription"))
    if direct:
        return direct
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    return object_id(details.get("subscription")) if isinstance(details, Mapping) else None


# ARB subscription statuses → ours. Suspended: a payment failed (or the card expired) and ARB charges nothing
# until the merchant fixes it, Stripe's past_due; terminated and expired subscriptions have ended.
AUTHNET_SUBSCRIPTION_STATUS: Final = {
    "active": "active",
    "suspended": "past_due",
    "terminated": "canceled",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "canceled",
}
AUTHNET_SUBSCRIPTION_EVENT = "net.authorize.customer.subscription."


def _authnet(event_type: str, obj: Mapping[str, Any]) -> Report | None:
    if event_type.startswith(AUTHNET_SUBSCRIPTION_EVENT) and obj.get("id") is not None:
        return Report(SUBSCRIPTION, "authnet", str(obj["id"]), _authnet_subscription_changes(event_type, obj))
    if event_type == "net.authorize.customer.deleted" and obj.get("id") is not None:
        return Report(CUSTOMER, "authnet", str(obj["id"]), deleted=True)
    if event_type == "net.authorize.customer.updated" and obj.get("id") is not None:
        return Report(CUSTOMER, "authnet", str(obj["id"]))  # only the profile id: the profile is re-fetched
    return None


def _authnet_subscription_changes(event_type: str, subscription: Mapping[str, Any]) -> dict[str, Any]:
    """The status the payload reports, else the one its event names (`…subscription.suspended`); `created`,
    `expiring` and the like without a status change nothing."""
    reported = subscription.get("status")
    named = event_type.removeprefix(AUTHNET_SUBSCRIPTION_EVENT)
    status = AUTHNET_SUBSCRIPTION_STATUS.get(reported.lower()) if isinstance(reported, str) else None
    status = status or AUTHNET_SUBSCRIPTION_STATUS.get(named)
    return {"status": status} if status else {}
