"""Re-fetch a subscription from its provider before a `customer.subscription.updated` webhook is applied: the
payload may be stale (Stripe advises fetching the object), the provider's current answer is not. An update that
changes nothing is how the port asks (the Stripe adapter retrieves the subscription then). When the provider
cannot be asked, the payload's report stands; the provider's timestamp still orders what is applied."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Final

from payments_shared.providers.port import Outcome, SubscriptionChange

from payments_billing.context import BillingContext
from payments_billing.provider_events import REPORTED_FIELDS, Report
from payments_billing.times import reported_periods

logger = logging.getLogger(__name__)

REFETCHED_EVENT_TYPES: Final = ("customer.subscription.updated",)


async def refetched(context: BillingContext, report: Report, event_type: str, event_id: str) -> Report:
    provider = context.providers.get(report.provider)
    if event_type not in REFETCHED_EVENT_TYPES or provider is None:
        return report
    try:
        result = await provider.update_subscription(report.reference, SubscriptionChange(f"refetch-{event_id}"))
    except Exception as error:  # an adapter bug or an outage: the payload's report stands
        logger.warning("subscription re-fetch failed", extra={"error": type(error).__name__})
        return report
    if result.outcome is not Outcome.APPROVED or result.details.get("unsupported") or "status" not in result.details:
        return report  # no snapshot of the subscription in the answer
    changes = {name: result.details[name] for name in REPORTED_FIELDS if name in result.details}
    changes.update(reported_periods(result.details))
    return replace(report, changes=changes)
