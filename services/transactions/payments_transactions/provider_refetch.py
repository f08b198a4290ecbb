"""Read the payment a webhook is about from its provider before the webhook is applied: the payload may be stale
(Stripe and Authorize.net both advise fetching the object), the provider's current state is not. What to read and
what the answer means are `domain.provider_events` (pure); the read is payments_shared.providers.refetch, as the
billing worker does for subscriptions. When the provider cannot be asked, the payload stands."""

from __future__ import annotations

from collections.abc import Mapping

from payments_shared.providers.refetch import refetch

from payments_transactions.domain.provider_events import ProviderEvent, refetch_reference, with_current_state


async def refetched(providers: Mapping[str, object], event: ProviderEvent, currency: str | None) -> ProviderEvent:
    reference = refetch_reference(event)
    if reference is None:
        return event
    result = await refetch(providers.get(event.provider), "retrieve_payment", reference, currency)
    return event if result is None else with_current_state(event, result.details)
