"""Ask a provider for its current view of an object before a webhook about it is applied: a payload may be stale
(Stripe and Authorize.net both advise fetching the object), the provider's answer is not. Shared by the workers
that apply webhooks; when the provider cannot be asked (it has no such read, an outage, a refusal) the answer is
None and the caller keeps the payload's view."""

from __future__ import annotations

import logging
from typing import Any

from payments_shared.providers.port import Outcome, ProviderResult

logger = logging.getLogger(__name__)


async def refetch(provider: object | None, read: str, *arguments: Any) -> ProviderResult | None:
    """`provider.<read>(*arguments)` when the provider has that read and approves; otherwise None."""
    method = getattr(provider, read, None) if provider is not None else None
    if method is None:
        return None
    try:
        result = await method(*arguments)
    except Exception as error:  # an adapter bug or an outage: the payload's view stands
        logger.warning("provider re-fetch failed", extra={"read": read, "error": type(error).__name__})
        return None
    if not isinstance(result, ProviderResult) or result.outcome is not Outcome.APPROVED:
        return None
    return None if result.details.get("unsupported") else result
