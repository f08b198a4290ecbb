"""Re-fetch the object a webhook is about from its provider before applying it: the payload may be stale, the
provider's current answer is not (payments_shared.providers.refetch). A Stripe subscription is read through an
update that changes nothing (the Stripe adapter retrieves the subscription then), whatever its event: a late
`created` or `trial_will_end` would otherwise undo our own newer changes, which carry no provider timestamp. So is
it for an invoice's outcome: Stripe's status follows the subscription's latest invoice, and a late or redelivered
event about an older one (last month's paid late) would otherwise show `active` while the latest is unpaid. An
Authorize.net customer profile is read through `retrieve_customer` (Stripe's customer object; Authorize.net's
profile: its webhook names only the profile id). When the provider cannot be asked, the payload's report stands;
the provider's timestamp still orders what is applied. Not an invoice's: it is no view of the subscription at all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from payments_shared.providers.port import SubscriptionChange
from payments_shared.providers.refetch import refetch

from payments_billing import customer as customers
from payments_billing.context import BillingContext
from payments_billing.provider_events import INVOICE_STATUS, REPORTED_FIELDS, Report, stripe_customer_changes
from payments_billing.times import reported_periods

REFETCHED_EVENT_PREFIX: Final = "customer.subscription."
NOT_REFETCHED_EVENT_TYPES: Final = ("customer.subscription.deleted",)  # final: the payload's cancellation stands
REFETCHED_CUSTOMER_EVENT_TYPES: Final = ("customer.updated", "net.authorize.customer.updated")


async def refetched(context: BillingContext, report: Report, event_type: str, event_id: str) -> Report | None:
    """The report with the subscription as its provider holds it now; None for an invoice event when the provider
    cannot say: its payload is no view of the subscription (its status guessed from an invoice that may be an
    older one), and the subscription's own events carry any move it made."""
    if not _refetched_event(event_type):
        return report
    provider = context.providers.get(report.provider)
    result = await refetch(provider, "update_subscription", report.reference, SubscriptionChange(f"refetch-{event_id}"))
    if result is None or "status" not in result.details:
        return None if event_type in INVOICE_STATUS else report  # no snapshot of the subscription in the answer
    changes = {name: result.details[name] for name in REPORTED_FIELDS if name in result.details}
    changes.update(reported_periods(result.details))
    return replace(report, changes=changes)


def _refetched_event(event_type: str) -> bool:
    if event_type in INVOICE_STATUS:
        return True
    return event_type.startswith(REFETCHED_EVENT_PREFIX) and event_type not in NOT_REFETCHED_EVENT_TYPES


async def refetched_customer(
    context: BillingContext, report: Report, event_type: str, customer: customers.Customer | None
) -> Report:
    if event_type not in REFETCHED_CUSTOMER_EVENT_TYPES:
        return report
    result = await refetch(context.providers.get(report.provider), "retrieve_customer", report.reference)
    if result is None:
        return report  # Stripe: the payload stands; Authorize.net: recorded by webhook-ingest, nothing to apply
    if report.provider == "authnet":
        return replace(report, changes=customers.authnet_profile_changes(result.details, customer), held_now=True)
    current = result.details.get("object")
    if not isinstance(current, Mapping) or current.get("deleted"):
        return replace(report, changes={})  # gone at Stripe: its customer.deleted says so
    return replace(report, changes=stripe_customer_changes(current), held_now=True)
