"""The Stripe adapter against localstripe: every flow API.md lets a Stripe merchant use, checked on both sides
(the adapter's result, and the object as localstripe then holds it)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from payments_shared.providers.port import (
    CustomerRequest,
    Outcome,
    PaymentRef,
    PaymentRequest,
    ProviderResult,
    SubscriptionChange,
    SubscriptionRequest,
)
from payments_shared.providers.stripe import StripeProvider

from tests.providers.conftest import LOCALSTRIPE_KEY
from tests.support.localstripe_server import THREE_D_SECURE_METHOD

TAG = "payments_operation"  # the metadata key our PaymentIntents and Refunds carry (README: Stripe re-drives)


async def stripe_get(base_url: str, path: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {LOCALSTRIPE_KEY}"}) as client:
        return await client.get(path, params=params)


async def stripe_object(base_url: str, path: str, **params: str) -> dict[str, Any]:
    response = await stripe_get(base_url, path, **params)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def stripe_post(base_url: str, path: str, data: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {LOCALSTRIPE_KEY}"}) as client:
        response = await client.post(path, data=data)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def paid(reference: str, amount: int, captured: int) -> PaymentRef:
    return PaymentRef(reference=reference, amount_authorized=amount, amount_captured=captured, currency="usd")


async def authorize(provider: StripeProvider, key: str, amount: int = 1000) -> ProviderResult:
    return await provider.pay(PaymentRequest(key, amount, "usd", "pm_card_visa", capture=False))


async def test_charge_creates_a_captured_payment_intent(stripe_provider: StripeProvider, localstripe: str) -> None:
    result = await stripe_provider.pay(
        PaymentRequest("cmd-charge", 1099, "usd", "pm_card_visa", capture=True, metadata={"order": "42"})
    )

    assert result.outcome is Outcome.APPROVED
    assert result.reference is not None and result.reference.startswith("pi_")
    assert result.amount == 1099
    assert result.details["payment_intent"] == result.reference
    assert result.details["captured"] is True
    assert str(result.details["charge"]).startswith("ch_")
    assert result.details["card_last4"] == "4242"
    intent = await stripe_object(localstripe, f"/v1/payment_intents/{result.reference}")
    assert (intent["status"], intent["amount"]) == ("succeeded", 1099)
    assert intent["metadata"] == {"order": "42", TAG: "cmd-charge"}  # our tag: found again after 24 h


async def test_authorize_then_partial_capture(stripe_provider: StripeProvider, localstripe: str) -> None:
    authorized = await authorize(stripe_provider, "cmd-auth")
    assert authorized.outcome is Outcome.APPROVED
    assert authorized.details["captured"] is False
    assert authorized.amount == 1000
    assert authorized.reference is not None
    before = await stripe_object(localstripe, f"/v1/payment_intents/{authorized.reference}")
    assert (before["status"], before["capture_method"]) == ("requires_capture", "manual")

    captured = await stripe_provider.capture(paid(authorized.reference, 1000, 0), 600, "cmd-capture")

    assert captured.outcome is Outcome.APPROVED
    assert (captured.reference, captured.amount, captured.details["captured"]) == (authorized.reference, 600, True)
    intent = await stripe_object(localstripe, f"/v1/payment_intents/{authorized.reference}")
    assert intent["status"] == "succeeded"
    # localstripe releases the uncaptured rest as a refund of the charge.
    assert intent["latest_charge"]["amount_refunded"] == 400


async def test_authorize_then_void(stripe_provider: StripeProvider, localstripe: str) -> None:
    authorized = await authorize(stripe_provider, "cmd-auth")
    assert authorized.reference is not None

    voided = await stripe_provider.void(paid(authorized.reference, 1000, 0), "cmd-void")

    assert voided.outcome is Outcome.APPROVED
    assert voided.reference == authorized.reference
    intent = await stripe_object(localstripe, f"/v1/payment_intents/{authorized.reference}")
    assert intent["status"] == "canceled"


async def test_refund_part_then_the_rest(stripe_provider: StripeProvider, localstripe: str) -> None:
    charged = await stripe_provider.pay(PaymentRequest("cmd-charge", 1000, "usd", "pm_card_visa", capture=True))
    assert charged.reference is not None
    payment = paid(charged.reference, 1000, 1000)

    first = await stripe_provider.refund(payment, 400, "cmd-refund-1", None)  # (localstripe refuses `reason`)
    rest = await stripe_provider.refund(payment, 600, "cmd-refund-2", "the customer changed their mind")

    assert (first.outcome, rest.outcome) == (Outcome.APPROVED, Outcome.APPROVED)
    assert (first.amount, rest.amount) == (400, 600)
    assert first.reference != rest.reference
    for refund in (first, rest):
        assert refund.reference is not None and refund.reference.startswith("re_")
        assert refund.details["refund"] == refund.reference
        assert refund.details["payment_intent"] == charged.reference
    refunds = await stripe_object(localstripe, "/v1/refunds", payment_intent=charged.reference)
    assert sorted(r["amount"] for r in refunds["data"]) == [400, 600]
    free_text = next(r for r in refunds["data"] if r["id"] == rest.reference)
    assert free_text["metadata"] == {"reason": "the customer changed their mind", TAG: "cmd-refund-2"}


async def test_decline_carries_the_code(stripe_provider: StripeProvider) -> None:
    result = await stripe_provider.pay(
        PaymentRequest("cmd-decline", 1000, "usd", "pm_card_chargeCustomerFail", capture=True)
    )

    assert result.outcome is Outcome.DECLINED
    assert result.decline_code == "card_declined"  # localstripe gives no decline_code: Stripe's code stands in
    assert result.message == "Your card was declined."
    assert str(result.details["charge"]).startswith("ch_")


async def test_three_d_secure_card_requires_action(stripe_provider: StripeProvider, localstripe: str) -> None:
    method = await stripe_post(localstripe, "/v1/payment_methods", THREE_D_SECURE_METHOD)

    result = await stripe_provider.pay(PaymentRequest("cmd-3ds", 2000, "usd", method["id"], capture=True))

    assert result.outcome is Outcome.REQUIRES_ACTION
    assert result.next_action is not None and result.next_action["type"] == "use_stripe_sdk"
    assert "secret" not in repr(result)
    intent = await stripe_object(localstripe, f"/v1/payment_intents/{result.reference}")
    assert intent["status"] == "requires_action"


async def test_unknown_payment_method_is_permanent(stripe_provider: StripeProvider) -> None:
    result = await stripe_provider.pay(PaymentRequest("cmd-unknown", 1000, "usd", "pm_nothing_here", capture=True))

    assert result.outcome is Outcome.PERMANENT


async def test_customer_create_update_delete(stripe_provider: StripeProvider, localstripe: str) -> None:
    created = await stripe_provider.create_customer(
        CustomerRequest("cmd-customer", email="ada@example.com", name="Ada", payment_method="pm_card_visa")
    )
    assert created.outcome is Outcome.APPROVED
    assert created.reference is not None and created.reference.startswith("cus_")
    default = created.details["default_payment_method"]
    assert str(default).startswith("pm_")
    customer = await stripe_object(localstripe, f"/v1/customers/{created.reference}")
    assert (customer["email"], customer["invoice_settings"]["default_payment_method"]) == ("ada@example.com", default)
    attached = await stripe_object(localstripe, f"/v1/payment_methods/{default}")
    assert attached["customer"] == created.reference

    updated = await stripe_provider.update_customer(
        created.reference, CustomerRequest("cmd-update", name="Ada Lovelace", metadata={"tier": "gold"})
    )
    assert updated.outcome is Outcome.APPROVED
    customer = await stripe_object(localstripe, f"/v1/customers/{created.reference}")
    assert (customer["name"], customer["email"], customer["metadata"]) == (
        "Ada Lovelace",
        "ada@example.com",
        {"tier": "gold"},
    )

    deleted = await stripe_provider.delete_customer(created.reference, "cmd-delete")
    assert deleted.outcome is Outcome.APPROVED
    assert (await stripe_get(localstripe, f"/v1/customers/{created.reference}")).status_code == 404
    again = await stripe_provider.delete_customer(created.reference, "cmd-delete")
    assert again.outcome is Outcome.APPROVED  # a redelivered delete finds it gone: done, not an error


async def test_update_customer_sets_a_new_default_payment_method(
    stripe_provider: StripeProvider, localstripe: str
) -> None:
    created = await stripe_provider.create_customer(CustomerRequest("cmd-customer", email="bob@example.com"))
    assert created.reference is not None and created.details["default_payment_method"] is None

    updated = await stripe_provider.update_customer(
        created.reference, CustomerRequest("cmd-update", payment_method="pm_card_visa")
    )

    default = updated.details["default_payment_method"]
    customer = await stripe_object(localstripe, f"/v1/customers/{created.reference}")
    assert customer["invoice_settings"]["default_payment_method"] == default


@pytest.fixture
async def customer(stripe_provider: StripeProvider) -> str:
    created = await stripe_provider.create_customer(
        CustomerRequest("cmd-customer", email="sub@example.com", payment_method="pm_card_visa")
    )
    assert created.reference is not None
    return created.reference


async def test_subscription_create_update_cancel(
    stripe_provider: StripeProvider, localstripe: str, customer: str
) -> None:
    created = await stripe_provider.create_subscription(
        SubscriptionRequest("cmd-sub", customer, 1500, "usd", "month", 1, quantity=2, metadata={"plan": "pro"})
    )
    assert created.outcome is Outcome.APPROVED
    assert created.reference is not None and created.reference.startswith("sub_")
    details = created.details
    assert (details["status"], details["quantity"], details["amount"], details["interval"]) == (
        "active",
        2,
        1500,
        "month",
    )
    assert details["current_period_end"] > details["current_period_start"]
    assert str(details["plan"]).startswith("plan_")
    plan = await stripe_object(localstripe, f"/v1/plans/{details['plan']}")
    assert (plan["amount"], plan["currency"], plan["interval"], plan["interval_count"]) == (1500, "usd", "month", 1)

    more = await stripe_provider.update_subscription(created.reference, SubscriptionChange("cmd-qty", quantity=3))
    assert (more.outcome, more.details["quantity"], more.details["amount"]) == (Outcome.APPROVED, 3, 1500)

    dearer = await stripe_provider.update_subscription(created.reference, SubscriptionChange("cmd-amt", amount=2500))
    assert (dearer.details["amount"], dearer.details["quantity"]) == (2500, 3)
    assert dearer.details["plan"] != details["plan"]

    ending = await stripe_provider.cancel_subscription(created.reference, True, "cmd-cancel-later")
    assert (ending.details["status"], ending.details["cancel_at_period_end"]) == ("active", True)

    canceled = await stripe_provider.cancel_subscription(created.reference, False, "cmd-cancel-now")
    assert canceled.details["status"] == "canceled"
    subscription = await stripe_object(localstripe, f"/v1/subscriptions/{created.reference}")
    assert subscription["status"] == "canceled"
    again = await stripe_provider.cancel_subscription(created.reference, False, "cmd-cancel-now")
    assert again.details["status"] == "canceled"


async def test_subscription_from_a_given_plan_and_update_flags(
    stripe_provider: StripeProvider, localstripe: str, customer: str
) -> None:
    plan = await stripe_post(
        localstripe,
        "/v1/plans",
        {"amount": "900", "currency": "eur", "interval": "year", "product[name]": "Yearly"},
    )

    created = await stripe_provider.create_subscription(
        SubscriptionRequest("cmd-sub", customer, 0, "eur", "year", 1, quantity=1, price=plan["id"])
    )
    assert created.reference is not None
    assert (created.details["price"], created.details["amount"], created.details["interval"]) == (
        plan["id"],
        900,
        "year",
    )
    assert "plan" not in created.details  # nothing created besides the subscription

    flagged = await stripe_provider.update_subscription(
        created.reference, SubscriptionChange("cmd-upd", cancel_at_period_end=True, metadata={"k": "v"})
    )
    subscription = await stripe_object(localstripe, f"/v1/subscriptions/{created.reference}")
    assert subscription["cancel_at_period_end"] is True  # (localstripe accepts but drops subscription metadata)
    assert flagged.details["cancel_at_period_end"] is True


async def test_a_subscription_made_with_a_plan_billing_above_the_period_limit_is_refused_before_stripe_is_asked(
    stripe_provider: StripeProvider, localstripe: str, customer: str
) -> None:
    plan = await stripe_post(
        localstripe, "/v1/plans", {"amount": "60000000", "currency": "usd", "interval": "month", "product[name]": "B"}
    )
    before = await stripe_object(localstripe, "/v1/subscriptions", customer=customer)

    refused = await stripe_provider.create_subscription(
        SubscriptionRequest("cmd-sub-over", customer, 0, "usd", "month", 1, quantity=2, price=plan["id"])
    )

    assert (refused.outcome, refused.details["invalid_param"]) == (Outcome.PERMANENT, "quantity")
    after = await stripe_object(localstripe, "/v1/subscriptions", customer=customer)
    assert len(after["data"]) == len(before["data"])  # nothing made at Stripe


async def test_a_new_plan_in_another_currency_or_above_the_period_limit_is_refused_before_any_change(
    stripe_provider: StripeProvider, localstripe: str, customer: str
) -> None:
    yearly = {"currency": "usd", "interval": "year", "product[name]": "Yearly"}
    cheap = await stripe_post(localstripe, "/v1/plans", {"amount": "1", **yearly})
    dear = await stripe_post(localstripe, "/v1/plans", {"amount": "10000", **yearly})
    euro = await stripe_post(localstripe, "/v1/plans", {"amount": "100", **yearly, "currency": "eur"})
    created = await stripe_provider.create_subscription(
        SubscriptionRequest("cmd-sub-limit", customer, 0, "usd", "year", 1, quantity=100_000, price=cheap["id"])
    )
    assert created.outcome is Outcome.APPROVED and created.reference is not None

    other_currency = await stripe_provider.update_subscription(
        created.reference, SubscriptionChange("cmd-eur", currency="usd", price=euro["id"], current_quantity=100_000)
    )
    assert (other_currency.outcome, other_currency.details["invalid_param"]) == (Outcome.PERMANENT, "price")
    too_much = await stripe_provider.update_subscription(
        created.reference, SubscriptionChange("cmd-dear", currency="usd", price=dear["id"], current_quantity=100_000)
    )
    assert (too_much.outcome, too_much.details["invalid_param"]) == (Outcome.PERMANENT, "price")
    subscription = await stripe_object(localstripe, f"/v1/subscriptions/{created.reference}")
    item = subscription["items"]["data"][0]
    assert (item["plan"]["id"], item["quantity"]) == (cheap["id"], 100_000)  # Stripe was not asked to change

    fits = await stripe_provider.update_subscription(
        created.reference, SubscriptionChange("cmd-fits", quantity=9_999, currency="usd", price=dear["id"])
    )
    assert (fits.outcome, fits.details["amount"], fits.details["quantity"]) == (Outcome.APPROVED, 10000, 9_999)


async def test_charge_of_a_customer_names_the_customer(
    stripe_provider: StripeProvider, localstripe: str, customer: str
) -> None:
    result = await stripe_provider.pay(
        PaymentRequest("cmd-charge", 700, "usd", "pm_card_visa", capture=True, customer_reference=customer)
    )

    assert (result.outcome, result.details["customer"]) == (Outcome.APPROVED, customer)
    intent = await stripe_object(localstripe, f"/v1/payment_intents/{result.reference}")
    assert intent["customer"] == customer


async def test_subscription_with_a_trial_and_a_new_default_payment_method(
    stripe_provider: StripeProvider, localstripe: str
) -> None:
    bare = await stripe_provider.create_customer(CustomerRequest("cmd-customer", email="trial@example.com"))
    assert bare.reference is not None

    created = await stripe_provider.create_subscription(
        SubscriptionRequest(
            "cmd-sub", bare.reference, 1200, "usd", "week", 2, quantity=1, trial_days=14, payment_method="pm_card_visa"
        )
    )

    assert created.outcome is Outcome.APPROVED
    default = created.details["default_payment_method"]
    subscription = await stripe_object(localstripe, f"/v1/subscriptions/{created.reference}")
    assert subscription["default_payment_method"] == default
    customer = await stripe_object(localstripe, f"/v1/customers/{bare.reference}")
    assert customer["invoice_settings"]["default_payment_method"] is None  # the subscription's own, not the customer's
    assert subscription["trial_period_days"] == 14
    assert (created.details["interval"], created.details["interval_count"]) == ("week", 2)
    # Stripe answers `trialing` here; localstripe leaves a trial subscription `incomplete` (it never bills it).
    assert created.details["status"] in ("trialing", "incomplete")


async def test_a_subscriptions_payment_method_bills_that_subscription_only(
    stripe_provider: StripeProvider, localstripe: str
) -> None:
    """Stripe's subscription-level default_payment_method: the customer's invoice default, which its other
    subscriptions bill, stays as it was. Here the new card attaches but every charge of it fails."""
    owner = await stripe_provider.create_customer(
        CustomerRequest("cmd-owner", email="two@example.com", payment_method="pm_card_visa")
    )
    assert owner.reference is not None
    visa = owner.details["default_payment_method"]
    failing = await stripe_post(
        localstripe,
        "/v1/payment_methods",
        {**THREE_D_SECURE_METHOD, "card[number]": "4000000000000341"},
    )

    first = await stripe_provider.create_subscription(
        SubscriptionRequest("cmd-sub-a", owner.reference, 1000, "usd", "month", 1, quantity=1)
    )
    second = await stripe_provider.create_subscription(
        SubscriptionRequest(
            "cmd-sub-b", owner.reference, 2000, "usd", "month", 1, quantity=1, payment_method=failing["id"]
        )
    )

    customer = await stripe_object(localstripe, f"/v1/customers/{owner.reference}")
    assert customer["invoice_settings"]["default_payment_method"] == visa
    assert first.details["status"] == "active"
    assert second.details["status"] == "incomplete"  # its first invoice was charged to its own card, and failed
    subscription = await stripe_object(localstripe, f"/v1/subscriptions/{second.reference}")
    assert (subscription["default_payment_method"], subscription["status"]) == (failing["id"], "incomplete")
