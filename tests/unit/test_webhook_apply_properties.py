"""Property: whatever a signed provider event holds, applying it to a transaction never raises and never breaks
the domain's rules (the state diagram and the amount rules `payments-ops verify` checks). Provider payloads are
JSON from outside: any field may be missing, of another type, huge, NaN or Infinity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from payments_ops.checks import check_transaction
from payments_shared.providers.port import Outcome
from payments_transactions.domain.provider_events import RULES, ProviderEvent

from tests.unit.test_webhook_apply_transactions import Stream

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=2_500),
    st.floats(),  # NaN and ±Infinity included: Python's json reads them
    st.text(max_size=12),
    st.sampled_from(["45.00", "1E+999990", "-3.5", "NaN", "0.001"]),  # decimals as Authorize.net writes them, and not
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
FIELDS = (
    "amount",
    "amount_received",
    "amount_capturable",
    "amount_refunded",
    "authAmount",
    "created",
    "status",
    "reason",
    "refunds",
    "refund",
    "last_payment_error",
    "charge",
    "payment_intent",
)
PAYLOADS = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6)

STARTS: dict[str, Callable[[str], Stream]] = {
    "awaiting action": lambda provider: Stream(provider=provider).outcome(Outcome.REQUIRES_ACTION),
    "held for review": lambda provider: Stream(provider=provider).outcome(
        Outcome.PENDING_REVIEW, amount=1000, message="held"
    ),
    "authorized": lambda provider: Stream(kind="authorize", provider=provider).outcome(Outcome.APPROVED, amount=1000),
    "captured": lambda provider: Stream(provider=provider).outcome(Outcome.APPROVED, amount=1000),
    "failed": lambda provider: Stream(provider=provider).outcome(Outcome.DECLINED, decline_code="generic_decline"),
}


def provider_event(rule: tuple[str, str], index: int, obj: dict[str, Any], about: str) -> ProviderEvent:
    provider, event_type = rule
    return ProviderEvent(
        provider=provider,
        event_id=f"evt_{index}",
        type=event_type,
        object_id=about,
        created=f"2026-01-01T00:01:{index:02d}.000000Z",
        obj={"id": about, **obj},
    )


@settings(max_examples=400, deadline=None, derandomize=True)  # stable in CI; 20,000 random ones passed
@given(
    start=st.sampled_from(list(STARTS)),
    provider=st.sampled_from(["stripe", "authnet"]),
    deliveries=st.lists(
        st.tuples(st.sampled_from(list(RULES)), PAYLOADS, st.sampled_from(["pi_1", "ch_1", "dp_1"])),
        min_size=1,
        max_size=5,
    ),
)
def test_any_payload_applies_without_raising_or_breaking_the_rules(
    start: str, provider: str, deliveries: list[tuple[tuple[str, str], dict[str, Any], str]]
) -> None:
    stream = STARTS[start](provider)
    for index, (rule, obj, about) in enumerate(deliveries):
        if rule[0] == provider:
            stream.apply(provider_event(rule, index, obj, about))
    assert check_transaction(stream.recorded()) == []


@settings(max_examples=300, deadline=None, derandomize=True)
@given(obj=PAYLOADS, about=st.sampled_from(["pi_1", "ch_1", "dp_1"]))
def test_the_ids_an_event_names_are_text_whatever_its_payload(obj: dict[str, Any], about: str) -> None:
    # How the worker finds the payment: a `charge` or `payment_intent` that was an object raised TypeError there.
    event = provider_event(("stripe", "charge.dispute.created"), 0, obj, about)
    references = event.references()
    assert all(isinstance(reference, str) and reference for reference in references)
    assert len(references) == len(set(references)) and about in references
