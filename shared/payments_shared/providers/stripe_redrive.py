"""Re-drives past Stripe's idempotency-key retention: how the adapter finds what an earlier attempt made.

Stripe keeps an idempotency key for at least 24 hours, then forgets it: the same key then creates a second
PaymentIntent, Refund, Customer or Subscription. So every one we create carries `OPERATION_TAG` in its metadata (the
idempotency key), and a re-drive whose first attempt is older than `KEY_TRUSTED_FOR` looks for the tagged object
before creating one. A PaymentIntent whose client metadata leaves no room for the tag is looked for among the
intents created since the first attempt, by what we sent; one that another payment of ours has recorded is that
payment's (the same order paid under another key) and is never adopted.

Pure: no I/O. Works on Stripe objects as plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from payments_shared.providers.port import ProviderResult
from payments_shared.providers.stripe_results import object_id

# Metadata key of the idempotency key that created the object. Never shown to clients: a transaction's metadata is
# the client's request, not Stripe's copy.
OPERATION_TAG: Final = "payments_operation"
MAX_METADATA_KEYS: Final = 50  # Stripe's limit (API.md gives clients the same 50)
# Stripe keeps a key at least 24 h after it first saw it, which is after we recorded the request. An hour less
# leaves room for clock skew and a slow first attempt; Search's lag (under a minute, an hour in an outage) is
# also well within it.
KEY_TRUSTED_FOR: Final = timedelta(hours=23)
UNRESOLVED_RETRY_AFTER_S: Final = 3600.0  # an operator decides at Stripe; asking again sooner changes nothing
# How long before the recorded request an intent made by its first attempt may show as created (Stripe's clock).
CLOCK_SKEW: Final = timedelta(minutes=5)
# Stripe's magic test PaymentMethods (pm_card_visa…) become a new pm_… on the intent: they cannot be compared.
_TEST_METHOD_PREFIX: Final = "pm_card_"


def key_may_be_forgotten(earlier_attempt_at: datetime | None, now: datetime) -> bool:
    """True when Stripe may no longer hold the key of an attempt made at `earlier_attempt_at` (None: no earlier
    attempt, the first one is being made)."""
    return earlier_attempt_at is not None and now - earlier_attempt_at >= KEY_TRUSTED_FOR


# What Stripe answers a capture or void of an intent no longer in a state that allows it (already captured or
# canceled): after a lost answer and a forgotten key, the earlier attempt's own doing, which the intent shows.
UNEXPECTED_STATE: Final = "payment_intent_unexpected_state"


def captured_as(amount: int) -> Callable[[Mapping[str, Any]], bool]:
    """Whether an intent shows a capture of `amount` done (a capture of another amount was not ours)."""

    def captured(intent: Mapping[str, Any]) -> bool:
        return intent.get("status") == "succeeded" and intent.get("amount_received") == amount

    return captured


def canceled(intent: Mapping[str, Any]) -> bool:
    return intent.get("status") == "canceled"


def tagged(metadata: Mapping[str, str], key: str) -> dict[str, str]:
    """The metadata to send: the client's, plus the tag when there is room and the client does not use its name
    (then the object can only be found by listing)."""
    if OPERATION_TAG in metadata or len(metadata) >= MAX_METADATA_KEYS:
        return dict(metadata)
    return {**metadata, OPERATION_TAG: key}


def untagging(metadata: Mapping[str, str]) -> dict[str, str]:
    """A metadata update of an object we tagged at its creation: it also removes the tag (the creation is over),
    so the client's keys may number 50 (Stripe counts the tag too). The same for every attempt, as its key needs;
    unless the client itself sets a key of that name."""
    if OPERATION_TAG in metadata:
        return dict(metadata)
    return {**metadata, OPERATION_TAG: ""}


def as_stored(metadata: Mapping[str, str]) -> dict[str, str]:
    """The metadata a creation sent as the new object shows it: Stripe sets no key for an empty value."""
    return {name: value for name, value in metadata.items() if value != ""}


def is_tagged(metadata: Mapping[str, str], key: str) -> bool:
    return metadata.get(OPERATION_TAG) == key


def search_query(key: str) -> str:
    """Stripe Search Query Language: the objects whose tag is `key` (quotes and backslashes escaped)."""
    escaped = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['{OPERATION_TAG}']:'{escaped}'"


def listing_window(earlier_attempt_at: datetime, now: datetime) -> tuple[int, int]:
    """`created` bounds (unix seconds) of every intent an attempt of the operation can have made: from shortly
    before the first attempt until now (a later re-drive past 24 h may have made one too)."""
    return int((earlier_attempt_at - CLOCK_SKEW).timestamp()), int(now.timestamp()) + 1


@dataclass(frozen=True)
class SentIntent:
    """What we send to create the PaymentIntent: what an earlier attempt's intent must show."""

    amount: int
    currency: str
    payment_method: str
    capture: bool
    customer: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


def _same_method(sent: str, shown: Any) -> bool:
    return sent.startswith(_TEST_METHOD_PREFIX) or object_id(shown) == sent


def _matches(intent: Mapping[str, Any], sent: SentIntent) -> bool:
    metadata = intent.get("metadata")
    return (
        intent.get("amount") == sent.amount
        and str(intent.get("currency") or "").lower() == sent.currency
        and (intent.get("capture_method") == "manual") == (not sent.capture)
        and object_id(intent.get("customer")) == sent.customer
        and _same_method(sent.payment_method, intent.get("payment_method"))
        and dict(metadata if isinstance(metadata, Mapping) else {}) == as_stored(sent.metadata)
    )


def matching_intents(intents: Iterable[Mapping[str, Any]], sent: SentIntent) -> list[Mapping[str, Any]]:
    """The listed intents an earlier attempt of `sent` may have created."""
    return [intent for intent in intents if _matches(intent, sent)]


def candidate_id(candidate: Mapping[str, Any]) -> str:
    return str(candidate.get("id"))


def without(candidates: Iterable[Mapping[str, Any]], excluded: Collection[str]) -> list[Mapping[str, Any]]:
    """The candidates whose id is not in `excluded` (those another payment of ours has recorded)."""
    return [candidate for candidate in candidates if candidate_id(candidate) not in excluded]


def tagged_objects(objects: Iterable[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    """The objects (Refunds, searched intents) tagged with `key`."""
    found = []
    for item in objects:
        metadata = item.get("metadata")
        if isinstance(metadata, Mapping) and is_tagged(metadata, key):
            found.append(item)
    return found


def unresolved(kind: str, candidates: Sequence[Mapping[str, Any]]) -> ProviderResult:
    """More than one object may be the earlier attempt's: creating another could move money twice, adopting one
    could record the wrong one. The operation stays open (not retried at once, not a provider failure); asking
    again is worth it only after an operator has acted at Stripe, hence the long `retry_after`."""
    ids = [candidate_id(candidate) for candidate in candidates]
    message = f"An earlier attempt may have created any of {len(ids)} Stripe {kind}s; an operator must decide."
    return ProviderResult.left_unresolved(ids, message, UNRESOLVED_RETRY_AFTER_S)
