"""Payments and refunds re-driven after Stripe has forgotten their idempotency key (it keeps keys 24 hours: a
dead letter requeued the next day, a system down for a day). Against the wire-format server, whose clock moves
and which forgets keys after 24 hours as Stripe does, and answers Search and lists as Stripe documents them.

Each test makes the first attempt "yesterday" (the server's clock set 25 h back), then re-drives it now with
`earlier_attempt_at` 25 h ago, as the transactions driver does."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from payments_shared.providers.port import (
    Claims,
    ClaimsOn,
    CustomerRequest,
    Outcome,
    PaymentRef,
    PaymentRequest,
    SubscriptionChange,
    SubscriptionRequest,
)
from payments_shared.providers.stripe import StripeProvider

from tests.support.stripe_wire_server import SERVER_ERROR, StripeWireServer

API_KEY = "sk_test_51RedriveKey0123456789abcdef"
TAG = "payments_operation"  # the metadata key our PaymentIntents and Refunds carry (README: Stripe re-drives)
TIMEOUT_S = 1.0  # a loaded machine answers a normal request in well under this; a stalled one never does
A_DAY_AND_MORE = timedelta(hours=25)
PAGE = 100  # Stripe's largest list page, which the adapter asks for
FULL_METADATA = {f"field{number}": f"value{number}" for number in range(50)}  # no room for the tag


@pytest.fixture
async def wire() -> AsyncIterator[StripeWireServer]:
    server = StripeWireServer(API_KEY)
    await server.start()
    server.advance(-A_DAY_AND_MORE.total_seconds())  # the first attempts happen yesterday
    yield server
    await server.stop()


@pytest.fixture
async def provider(wire: StripeWireServer) -> AsyncIterator[StripeProvider]:
    adapter = StripeProvider(API_KEY, api_base=wire.base_url, timeout_s=TIMEOUT_S)
    yield adapter
    await adapter.close()


def payment(
    key: str = "cmd-pay",
    *,
    amount: int = 1000,
    metadata: Mapping[str, str] | None = None,
    earlier_attempt_at: datetime | None = None,
) -> PaymentRequest:
    return PaymentRequest(
        key, amount, "usd", "pm_card_visa", capture=True, metadata=dict(metadata or {}),
        earlier_attempt_at=earlier_attempt_at,
    )  # fmt: skip


def next_day(wire: StripeWireServer) -> datetime:
    """Move the server to now, past its keys' retention; when the first attempts were made."""
    wire.advance(A_DAY_AND_MORE.total_seconds())
    return datetime.now(UTC) - A_DAY_AND_MORE


def calls(wire: StripeWireServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in wire.requests]


async def lost_answer_payment(wire: StripeWireServer, provider: StripeProvider, request: PaymentRequest) -> None:
    """The first attempt: Stripe creates the PaymentIntent, its answer never reaches us."""
    wire.stall_next(TIMEOUT_S * 2)
    assert (await provider.pay(request)).outcome is Outcome.RETRYABLE
    assert len(wire.payment_intents) == 1


# ---- PaymentIntents, tagged ------------------------------------------------------------------------------------


async def test_a_payment_redriven_a_day_later_returns_the_intent_its_first_attempt_made(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    await lost_answer_payment(wire, provider, payment(metadata={"order": "7"}))
    first_intent = next(iter(wire.payment_intents))
    earlier = next_day(wire)

    redriven = await provider.pay(payment(metadata={"order": "7"}, earlier_attempt_at=earlier))

    assert (redriven.outcome, redriven.reference, redriven.amount) == (Outcome.APPROVED, first_intent, 1000)
    assert list(wire.payment_intents) == [first_intent]  # the customer is charged once
    assert calls(wire)[-1] == "GET /v1/payment_intents/search"


async def test_a_payment_redriven_a_day_later_whose_first_attempt_made_nothing_creates_one_tagged_intent(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    wire.fail_next(500, SERVER_ERROR)  # the first attempt never reached the payment
    assert (await provider.pay(payment())).outcome is Outcome.RETRYABLE
    earlier = next_day(wire)

    redriven = await provider.pay(payment(earlier_attempt_at=earlier))

    assert redriven.outcome is Outcome.APPROVED
    assert list(wire.payment_intents) == [redriven.reference]
    assert calls(wire)[-2:] == ["GET /v1/payment_intents/search", "POST /v1/payment_intents"]
    assert wire.payment_intents[str(redriven.reference)]["metadata"] == {TAG: "cmd-pay"}


async def test_a_declined_payment_redriven_a_day_later_is_the_same_decline_not_a_new_attempt(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    declined = PaymentRequest("cmd-declined", 1000, "usd", "pm_card_chargeDeclinedInsufficientFunds", capture=True)
    wire.stall_next(TIMEOUT_S * 2)
    assert (await provider.pay(declined)).outcome is Outcome.RETRYABLE
    earlier = next_day(wire)

    redriven = await provider.pay(PaymentRequest(**{**declined.__dict__, "earlier_attempt_at": earlier}))

    assert (redriven.outcome, redriven.decline_code) == (Outcome.DECLINED, "insufficient_funds")
    assert len(wire.payment_intents) == 1


async def test_where_search_is_refused_the_intent_is_found_by_listing(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    await lost_answer_payment(wire, provider, payment())
    first_intent = next(iter(wire.payment_intents))
    earlier = next_day(wire)
    wire.search_refused = True  # Stripe offers no Search to merchants in India

    redriven = await provider.pay(payment(earlier_attempt_at=earlier))

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first_intent)
    assert list(wire.payment_intents) == [first_intent]


async def test_a_listed_intent_is_matched_on_the_metadata_stripe_stored_not_the_empty_values_sent(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    """On create, Stripe sets no key for an empty value: the intent shows the metadata without it."""
    sent = {"order": "7", "gift_note": ""}
    await lost_answer_payment(wire, provider, payment(metadata=sent))
    first_intent = next(iter(wire.payment_intents))
    assert wire.payment_intents[first_intent]["metadata"] == {"order": "7", TAG: "cmd-pay"}
    earlier = next_day(wire)
    wire.search_refused = True

    redriven = await provider.pay(payment(metadata=sent, earlier_attempt_at=earlier))

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first_intent)
    assert list(wire.payment_intents) == [first_intent]  # no second PaymentIntent


async def test_a_first_attempt_and_a_redrive_within_23_hours_make_no_lookup(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    wire.stall_next(TIMEOUT_S * 2)
    assert (await provider.pay(payment())).outcome is Outcome.RETRYABLE
    wire.advance(timedelta(hours=22).total_seconds())

    redriven = await provider.pay(payment(earlier_attempt_at=datetime.now(UTC) - timedelta(hours=22)))

    assert redriven.outcome is Outcome.APPROVED
    assert calls(wire) == ["POST /v1/payment_intents"] * 2  # the key still holds: no Search on the hot path
    assert len(wire.payment_intents) == 1
    assert wire.payment_intents[str(redriven.reference)]["metadata"] == {TAG: "cmd-pay"}


# ---- PaymentIntents the client's 50 metadata keys leave no room to tag ----------------------------------------


async def test_an_untagged_payment_redriven_a_day_later_adopts_the_one_listed_intent_that_matches(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    await provider.pay(payment("cmd-other-amount", amount=999, metadata=FULL_METADATA))
    await provider.pay(payment("cmd-other-metadata", metadata={**FULL_METADATA, "field0": "other"}))
    wire.stall_next(TIMEOUT_S * 2)
    assert (await provider.pay(payment(metadata=FULL_METADATA))).outcome is Outcome.RETRYABLE
    ours = list(wire.payment_intents)[-1]
    earlier = next_day(wire)

    redriven = await provider.pay(payment(metadata=FULL_METADATA, earlier_attempt_at=earlier))

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, ours)
    assert len(wire.payment_intents) == 3  # nothing new
    assert calls(wire)[-1] == "GET /v1/payment_intents"
    assert TAG not in wire.payment_intents[ours]["metadata"]


async def test_an_untagged_payment_redriven_a_day_later_that_lists_no_match_looks_then_creates_one(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    await provider.pay(payment("cmd-other-amount", amount=999, metadata=FULL_METADATA))
    wire.fail_next(500, SERVER_ERROR)
    assert (await provider.pay(payment(metadata=FULL_METADATA))).outcome is Outcome.RETRYABLE
    earlier = next_day(wire)

    redriven = await provider.pay(payment(metadata=FULL_METADATA, earlier_attempt_at=earlier))

    assert redriven.outcome is Outcome.APPROVED
    assert len(wire.payment_intents) == 2
    assert calls(wire)[-2:] == ["GET /v1/payment_intents", "POST /v1/payment_intents"]


async def test_an_untagged_payment_with_several_matching_intents_creates_nothing_and_stays_open(
    wire: StripeWireServer, provider: StripeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # Another operation with the same amount, card and metadata (a client that charged the same order twice).
    await provider.pay(payment("cmd-twin", metadata=FULL_METADATA))
    wire.stall_next(TIMEOUT_S * 2)
    assert (await provider.pay(payment(metadata=FULL_METADATA))).outcome is Outcome.RETRYABLE
    earlier = next_day(wire)
    caplog.set_level(logging.ERROR)

    redriven = await provider.pay(payment(metadata=FULL_METADATA, earlier_attempt_at=earlier))

    assert redriven.outcome is Outcome.RETRYABLE
    assert sorted(redriven.details["unresolved"]) == sorted(wire.payment_intents)
    assert len(wire.payment_intents) == 2  # money does not move a second time
    assert any("re-drive unresolved" in record.getMessage() for record in caplog.records)


# ---- Refunds -------------------------------------------------------------------------------------------------


async def test_a_refund_redriven_a_day_later_returns_the_refund_its_first_attempt_made(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    charged = await provider.pay(payment("cmd-charge"))
    paid = PaymentRef(str(charged.reference), 1000, 1000, "usd")
    await provider.refund(paid, 100, "cmd-other-refund", None)
    wire.stall_next(TIMEOUT_S * 2)
    assert (await provider.refund(paid, 300, "cmd-refund", None)).outcome is Outcome.RETRYABLE
    first_refund = list(wire.refunds)[-1]
    earlier = next_day(wire)

    redriven = await provider.refund(paid, 300, "cmd-refund", None, earlier)

    assert (redriven.outcome, redriven.reference, redriven.amount) == (Outcome.APPROVED, first_refund, 300)
    assert sorted(r["amount"] for r in wire.refunds.values()) == [100, 300]  # refunded once
    assert calls(wire)[-1] == "GET /v1/refunds"


async def test_a_refund_redriven_a_day_later_whose_first_attempt_made_nothing_refunds_once_tagged(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    charged = await provider.pay(payment("cmd-charge"))
    paid = PaymentRef(str(charged.reference), 1000, 1000, "usd")
    wire.fail_next(500, SERVER_ERROR)
    assert (await provider.refund(paid, 300, "cmd-refund", "order lost")).outcome is Outcome.RETRYABLE
    earlier = next_day(wire)

    redriven = await provider.refund(paid, 300, "cmd-refund", "order lost", earlier)

    assert redriven.outcome is Outcome.APPROVED
    assert calls(wire)[-2:] == ["GET /v1/refunds", "POST /v1/refunds"]
    assert wire.refunds[str(redriven.reference)]["metadata"] == {TAG: "cmd-refund", "reason": "order lost"}


# ---- a rolling deploy: the first attempt was made by a version that did not tag ------------------------------


async def test_a_redrive_of_an_untagged_first_attempt_within_a_day_gets_its_answer_not_a_failure(
    wire: StripeWireServer, provider: StripeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    import payments_shared.providers.stripe_redrive as redrive

    with monkeypatch.context() as older_version:
        older_version.setattr(redrive, "tagged", lambda metadata, key: dict(metadata))
        wire.stall_next(TIMEOUT_S * 2)
        assert (await provider.pay(payment(metadata={"order": "7"}))).outcome is Outcome.RETRYABLE
    first_intent = next(iter(wire.payment_intents))
    wire.advance(3600)

    redriven = await provider.pay(
        payment(metadata={"order": "7"}, earlier_attempt_at=datetime.now(UTC) - timedelta(hours=1))
    )

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first_intent)
    assert len(wire.payment_intents) == 1


# ---- captures and voids: no object to look for, the intent's state tells ------------------------------------------


async def test_a_capture_redriven_a_day_later_that_its_first_attempt_made_is_the_capture_not_a_conflict(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    authorized = await provider.pay(PaymentRequest("cmd-auth", 1000, "usd", "pm_card_visa", capture=False))
    paid = PaymentRef(str(authorized.reference), 1000, 0, "usd")
    wire.stall_next(TIMEOUT_S * 2)  # Stripe captures, its answer never reaches us
    assert (await provider.capture(paid, 600, "cmd-capture")).outcome is Outcome.RETRYABLE
    next_day(wire)  # the key is forgotten: Stripe now refuses the capture of a succeeded intent

    redriven = await provider.capture(paid, 600, "cmd-capture")

    assert (redriven.outcome, redriven.amount) == (Outcome.APPROVED, 600)
    assert wire.payment_intents[str(authorized.reference)]["amount_received"] == 600


async def test_a_capture_refused_for_an_intent_captured_with_another_amount_stays_a_conflict(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    authorized = await provider.pay(PaymentRequest("cmd-auth", 1000, "usd", "pm_card_visa", capture=False))
    paid = PaymentRef(str(authorized.reference), 1000, 0, "usd")
    assert (await provider.capture(paid, 400, "cmd-dashboard")).outcome is Outcome.APPROVED  # e.g. the dashboard

    captured = await provider.capture(paid, 600, "cmd-capture")

    assert captured.outcome is Outcome.PERMANENT
    assert captured.details["conflict"] == "payment_intent_unexpected_state"


async def test_a_void_redriven_a_day_later_that_its_first_attempt_made_is_the_void_not_a_conflict(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    authorized = await provider.pay(PaymentRequest("cmd-auth", 1000, "usd", "pm_card_visa", capture=False))
    paid = PaymentRef(str(authorized.reference), 1000, 0, "usd")
    wire.stall_next(TIMEOUT_S * 2)  # Stripe cancels the intent, its answer never reaches us
    assert (await provider.void(paid, "cmd-void")).outcome is Outcome.RETRYABLE
    next_day(wire)  # the key is forgotten: Stripe now refuses to cancel a canceled intent

    redriven = await provider.void(paid, "cmd-void")

    assert redriven.outcome is Outcome.APPROVED
    assert wire.payment_intents[str(authorized.reference)]["status"] == "canceled"


# ---- intents another transaction recorded (the same order paid under another key) -----------------------------


def owned(*references: str, contested: bool = False) -> ClaimsOn:
    """The caller's records (what the transactions worker's index answers): these ids are other transactions';
    `contested`: another payment that sent the same has no answer recorded."""

    async def claims(asked: Sequence[str]) -> Claims:
        return Claims(frozenset(asked) & frozenset(references), contested)

    return claims


async def test_an_untagged_redrive_that_made_nothing_creates_rather_than_adopt_another_transactions_intent(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    other = await provider.pay(payment("cmd-same-order", metadata=FULL_METADATA))
    wire.fail_next(500, SERVER_ERROR)
    assert (await provider.pay(payment(metadata=FULL_METADATA))).outcome is Outcome.RETRYABLE
    earlier = next_day(wire)

    request = payment(metadata=FULL_METADATA, earlier_attempt_at=earlier)
    redriven = await provider.pay(replace(request, claims=owned(str(other.reference))))

    assert redriven.outcome is Outcome.APPROVED
    assert redriven.reference != other.reference
    assert len(wire.payment_intents) == 2
    assert calls(wire)[-2:] == ["GET /v1/payment_intents", "POST /v1/payment_intents"]


async def test_the_candidates_an_operator_chooses_between_leave_out_those_another_transaction_recorded(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    other = await provider.pay(payment("cmd-same-order", metadata=FULL_METADATA))
    await provider.pay(payment("cmd-twin", metadata=FULL_METADATA))  # unrecorded: it may be ours
    wire.stall_next(TIMEOUT_S * 2)
    assert (await provider.pay(payment(metadata=FULL_METADATA))).outcome is Outcome.RETRYABLE
    earlier = next_day(wire)

    request = payment(metadata=FULL_METADATA, earlier_attempt_at=earlier)
    redriven = await provider.pay(replace(request, claims=owned(str(other.reference))))

    assert redriven.unresolved
    assert sorted(redriven.details["unresolved"]) == sorted(set(wire.payment_intents) - {other.reference})
    assert len(wire.payment_intents) == 3


async def test_an_untagged_intent_nobody_recorded_is_not_adopted_while_another_payment_that_sent_the_same_is_open(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    # The other payment's answer was lost too: its own re-drive would take the same intent (by its key, or listed).
    await provider.pay(payment("cmd-same-order", metadata=FULL_METADATA))
    wire.fail_next(500, SERVER_ERROR)
    assert (await provider.pay(payment(metadata=FULL_METADATA))).outcome is Outcome.RETRYABLE
    earlier = next_day(wire)

    request = payment(metadata=FULL_METADATA, earlier_attempt_at=earlier)
    redriven = await provider.pay(replace(request, claims=owned(contested=True)))

    assert redriven.unresolved
    assert redriven.details["unresolved"] == list(wire.payment_intents)
    assert len(wire.payment_intents) == 1


async def test_a_tagged_intent_is_adopted_whatever_other_payments_are_open(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    await lost_answer_payment(wire, provider, payment(metadata={"order": "7"}))
    earlier = next_day(wire)
    wire.search_refused = True  # listed, but matched with its tag: it is this payment's

    request = payment(metadata={"order": "7"}, earlier_attempt_at=earlier)
    redriven = await provider.pay(replace(request, claims=owned(contested=True)))

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, next(iter(wire.payment_intents)))


# ---- Subscriptions: a second one would bill the customer twice every period ----------------------------------


def subscription(
    customer: str, accepted_at: datetime, metadata: Mapping[str, str] | None = None
) -> SubscriptionRequest:
    return SubscriptionRequest(
        "cmd-sub", customer, 1500, "usd", "month", 1, 1, metadata=dict(metadata or {}), accepted_at=accepted_at
    )


async def stripe_customer(provider: StripeProvider) -> str:
    created = await provider.create_customer(CustomerRequest("cmd-customer", email="subscriber@example.com"))
    assert created.outcome is Outcome.APPROVED
    return str(created.reference)


async def test_a_subscription_redriven_a_day_later_returns_the_one_its_first_attempt_made(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    customer = await stripe_customer(provider)
    accepted_yesterday = datetime.now(UTC) - A_DAY_AND_MORE
    request = subscription(customer, accepted_yesterday, {"plan": "gold"})
    first = await provider.create_subscription(request)  # made; its answer died with the process that asked
    assert first.outcome is Outcome.APPROVED
    next_day(wire)

    redriven = await provider.create_subscription(request)

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first.reference)
    assert list(wire.subscriptions) == [first.reference]  # one subscription: the customer is billed once a period
    assert wire.subscriptions[str(first.reference)]["metadata"] == {"plan": "gold", TAG: "cmd-sub"}


async def test_an_untagged_subscription_redriven_a_day_later_is_found_by_what_was_sent(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    customer = await stripe_customer(provider)
    request = subscription(customer, datetime.now(UTC) - A_DAY_AND_MORE, FULL_METADATA)
    first = await provider.create_subscription(request)
    next_day(wire)

    redriven = await provider.create_subscription(request)

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first.reference)
    assert list(wire.subscriptions) == [first.reference]


async def test_an_untagged_subscription_sent_an_empty_metadata_value_is_found_by_what_stripe_stored(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    customer = await stripe_customer(provider)
    request = subscription(customer, datetime.now(UTC) - A_DAY_AND_MORE, {**FULL_METADATA, "field0": ""})
    first = await provider.create_subscription(request)
    assert len(wire.subscriptions[str(first.reference)]["metadata"]) == 49  # no key for the empty value
    next_day(wire)

    redriven = await provider.create_subscription(request)

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first.reference)
    assert list(wire.subscriptions) == [first.reference]


async def test_a_subscription_redriven_a_day_later_whose_first_attempt_made_none_creates_one(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    customer = await stripe_customer(provider)
    next_day(wire)

    created = await provider.create_subscription(subscription(customer, datetime.now(UTC) - A_DAY_AND_MORE))

    assert created.outcome is Outcome.APPROVED
    assert list(wire.subscriptions) == [created.reference]
    assert calls(wire)[-3:] == ["GET /v1/subscriptions", "POST /v1/plans", "POST /v1/subscriptions"]


async def test_a_subscription_accepted_within_23_hours_makes_no_lookup(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    customer = await stripe_customer(provider)
    next_day(wire)

    created = await provider.create_subscription(subscription(customer, datetime.now(UTC) - timedelta(hours=22)))

    assert created.outcome is Outcome.APPROVED
    assert "GET /v1/subscriptions" not in calls(wire)


async def test_the_tag_leaves_the_client_all_50_metadata_keys_of_a_subscription(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    customer = await stripe_customer(provider)
    almost_full = {f"field{number}": "value" for number in range(49)}
    created = await provider.create_subscription(subscription(customer, datetime.now(UTC), almost_full))
    assert wire.subscriptions[str(created.reference)]["metadata"] == {**almost_full, TAG: "cmd-sub"}

    fiftieth = SubscriptionChange("cmd-update", metadata={"field49": "value"})
    updated = await provider.update_subscription(str(created.reference), fiftieth)

    assert updated.outcome is Outcome.APPROVED, updated.message
    assert wire.subscriptions[str(created.reference)]["metadata"] == {**almost_full, "field49": "value"}


async def deleted_customer_and_another(provider: StripeProvider) -> tuple[str, str]:
    gone = await stripe_customer(provider)
    other = await provider.create_customer(CustomerRequest("cmd-other", email="other@example.com"))
    return gone, str(other.reference)


async def test_a_deleted_customers_subscription_listed_by_date_is_found_past_a_page_of_another_customers(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    gone, other = await deleted_customer_and_another(provider)
    request = subscription(gone, datetime.now(UTC) - A_DAY_AND_MORE, FULL_METADATA)  # no tag: found by metadata
    first = await provider.create_subscription(request)
    wire.advance(60)
    for number in range(PAGE + 1):  # newer, the same metadata: a page and more listed before it
        theirs = replace(request, idempotency_key=f"cmd-o{number}", customer_reference=other, accepted_at=None)
        await provider.create_subscription(theirs)
    assert (await provider.delete_customer(gone, "cmd-delete")).outcome is Outcome.APPROVED
    wire.deleted_customer_lists_refused = True
    next_day(wire)

    redriven = await provider.create_subscription(request)

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first.reference)
    pages = [dict(r.params) for r in wire.requests if r.path == "/v1/subscriptions" and r.method == "GET"]
    assert "customer" not in pages[-1] and "starting_after" in pages[-1]  # listed by date, page after page
    assert len(wire.subscriptions) == PAGE + 2


async def test_a_deleted_customers_redrive_never_adopts_another_customers_subscription_listed_by_date(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    gone, other = await deleted_customer_and_another(provider)
    request = subscription(gone, datetime.now(UTC) - A_DAY_AND_MORE, FULL_METADATA)
    others = await provider.create_subscription(replace(request, idempotency_key="cmd-o", customer_reference=other))
    assert (await provider.delete_customer(gone, "cmd-delete")).outcome is Outcome.APPROVED
    wire.deleted_customer_lists_refused = True
    next_day(wire)

    redriven = await provider.create_subscription(request)  # its first attempt made none

    assert redriven.reference != others.reference and redriven.outcome is not Outcome.APPROVED
    assert list(wire.subscriptions) == [others.reference]


# ---- Customers: a second one would split the customer's payment methods and subscriptions -----------------------


def customer(
    accepted_at: datetime, metadata: Mapping[str, str] | None = None, key: str = "cmd-customer"
) -> CustomerRequest:
    return CustomerRequest(
        key, email="ada@example.com", name="Ada", metadata=dict(metadata or {}), payment_method="pm_card_visa",
        accepted_at=accepted_at,
    )  # fmt: skip


async def lost_answer_customer(wire: StripeWireServer, provider: StripeProvider, request: CustomerRequest) -> None:
    """The first attempt: Stripe creates the customer, its answer never reaches us (the worker died)."""
    wire.stall_next(0)  # the look-up (the command was accepted a day ago)
    wire.stall_next(TIMEOUT_S * 2)  # the creation
    assert (await provider.create_customer(request)).outcome is Outcome.RETRYABLE
    assert len(wire.customers) == 1


async def test_a_customer_redriven_a_day_later_adopts_the_one_its_first_attempt_made_and_finishes_it(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    request = customer(datetime.now(UTC) - A_DAY_AND_MORE, {"tier": "gold"})
    await lost_answer_customer(wire, provider, request)
    made = next(iter(wire.customers))
    next_day(wire)

    redriven = await provider.create_customer(request)

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, made)
    assert list(wire.customers) == [made]  # one Stripe customer
    assert wire.customers[made]["metadata"] == {"tier": "gold", TAG: "cmd-customer"}
    default = wire.customers[made]["invoice_settings"]["default_payment_method"]
    assert default is not None and redriven.details["default_payment_method"] == default
    assert "GET /v1/customers/search" in calls(wire)


async def test_a_finished_customer_redriven_a_day_later_is_returned_as_it_is(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    request = customer(datetime.now(UTC) - A_DAY_AND_MORE)
    first = await provider.create_customer(request)  # made; its answer died with the worker that asked
    assert first.outcome is Outcome.APPROVED
    next_day(wire)

    redriven = await provider.create_customer(request)

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first.reference)
    assert redriven.details["default_payment_method"] == first.details["default_payment_method"]
    assert list(wire.customers) == [first.reference]
    assert calls(wire)[-1] == "GET /v1/customers/search"  # no second PaymentMethod attached


@pytest.mark.parametrize("search_refused", [False, True])
async def test_a_customer_without_room_for_the_tag_or_search_is_found_by_its_email_and_what_was_sent(
    wire: StripeWireServer, provider: StripeProvider, search_refused: bool
) -> None:
    request = customer(datetime.now(UTC) - A_DAY_AND_MORE, {} if search_refused else FULL_METADATA)
    wire.search_refused = search_refused  # Stripe offers no Search to merchants in India
    other = replace(customer(datetime.now(UTC), key="cmd-someone-else"), email="other@example.com")
    someone_else = await provider.create_customer(other)
    first = await provider.create_customer(request)
    assert first.outcome is Outcome.APPROVED, first
    next_day(wire)

    redriven = await provider.create_customer(request)

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first.reference)
    assert set(wire.customers) == {someone_else.reference, first.reference}
    assert "GET /v1/customers" in calls(wire)


async def test_a_customer_listed_where_search_is_refused_is_matched_on_the_metadata_stripe_stored(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    request = customer(datetime.now(UTC) - A_DAY_AND_MORE, {"tier": "gold", "referrer": ""})
    wire.search_refused = True
    first = await provider.create_customer(request)
    assert wire.customers[str(first.reference)]["metadata"] == {"tier": "gold", TAG: "cmd-customer"}
    next_day(wire)

    redriven = await provider.create_customer(request)

    assert (redriven.outcome, redriven.reference) == (Outcome.APPROVED, first.reference)
    assert list(wire.customers) == [first.reference]


async def test_two_customers_a_redrive_may_have_made_leave_it_unresolved_and_create_none(
    wire: StripeWireServer, provider: StripeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    request = customer(datetime.now(UTC) - A_DAY_AND_MORE, FULL_METADATA)
    await provider.create_customer(request)
    # Another command, within the day, for a customer with the same email, name and metadata.
    await provider.create_customer(customer(datetime.now(UTC), FULL_METADATA, key="cmd-the-same-again"))
    next_day(wire)
    caplog.set_level(logging.ERROR)

    redriven = await provider.create_customer(request)

    assert redriven.unresolved
    assert sorted(redriven.details["unresolved"]) == sorted(wire.customers)
    assert len(wire.customers) == 2
    assert any("re-drive unresolved" in record.getMessage() for record in caplog.records)


async def test_a_customer_accepted_within_23_hours_makes_no_lookup(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    next_day(wire)

    created = await provider.create_customer(customer(datetime.now(UTC) - timedelta(hours=22)))

    assert created.outcome is Outcome.APPROVED
    assert not [call for call in calls(wire) if call.startswith("GET /v1/customers")]


async def test_the_tag_leaves_the_client_all_50_metadata_keys_of_a_customer(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    almost_full = {f"field{number}": "value" for number in range(49)}
    created = await provider.create_customer(customer(datetime.now(UTC), almost_full))
    assert wire.customers[str(created.reference)]["metadata"] == {**almost_full, TAG: "cmd-customer"}

    fiftieth = CustomerRequest("cmd-update", metadata={"field49": "value"})
    updated = await provider.update_customer(str(created.reference), fiftieth)

    assert updated.outcome is Outcome.APPROVED, updated.message
    assert wire.customers[str(created.reference)]["metadata"] == {**almost_full, "field49": "value"}
