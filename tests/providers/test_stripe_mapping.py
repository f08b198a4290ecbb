"""The pure mappings of the Stripe adapter: Stripe statuses and shapes → our outcomes and API.md's statuses."""

from __future__ import annotations

import pytest
from payments_shared.providers.port import Outcome
from payments_shared.providers.stripe_errors import our_field, retry_after_seconds, safe_message
from payments_shared.providers.stripe_results import (
    next_action,
    payment_result,
    refund_result,
    subscription_result,
    subscription_status,
)

API_STATUSES = {"incomplete", "trialing", "active", "past_due", "unpaid", "canceled"}


@pytest.mark.parametrize(
    ("stripe_status", "ours"),
    [
        ("incomplete", "incomplete"),
        ("incomplete_expired", "canceled"),
        ("trialing", "trialing"),
        ("active", "active"),
        ("past_due", "past_due"),
        ("unpaid", "unpaid"),
        ("canceled", "canceled"),
        ("paused", "unpaid"),
    ],
)
def test_every_stripe_subscription_status_maps_to_one_of_api_mds_six(stripe_status: str, ours: str) -> None:
    assert subscription_status(stripe_status) == ours
    assert ours in API_STATUSES


def test_subscription_periods_are_read_from_the_item_on_current_api_versions() -> None:
    subscription = {
        "id": "sub_1",
        "status": "trialing",
        "customer": "cus_1",
        "cancel_at_period_end": False,
        "items": {
            "data": [
                {
                    "id": "si_1",
                    "quantity": 2,
                    "current_period_start": 100,
                    "current_period_end": 200,
                    "price": {
                        "id": "price_1",
                        "unit_amount": 900,
                        "currency": "eur",
                        "recurring": {"interval": "week", "interval_count": 2},
                    },
                }
            ]
        },
    }

    details = subscription_result(subscription).details

    assert details["status"] == "trialing"
    assert (details["current_period_start"], details["current_period_end"]) == (100, 200)
    assert (details["price"], details["amount"], details["interval"], details["interval_count"]) == (
        "price_1",
        900,
        "week",
        2,
    )
    assert (details["quantity"], details["subscription_item"], details["customer"]) == (2, "si_1", "cus_1")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("succeeded", Outcome.APPROVED),
        ("requires_capture", Outcome.APPROVED),
        ("requires_action", Outcome.REQUIRES_ACTION),
        ("processing", Outcome.PENDING_REVIEW),
        ("requires_payment_method", Outcome.DECLINED),
        ("canceled", Outcome.DECLINED),
        ("requires_confirmation", Outcome.PERMANENT),
    ],
)
def test_payment_intent_status_to_outcome(status: str, outcome: Outcome) -> None:
    intent = {"id": "pi_1", "status": status, "amount": 500, "latest_charge": "ch_1"}

    result = payment_result(intent)

    assert (result.outcome, result.reference, result.details["payment_intent"]) == (outcome, "pi_1", "pi_1")


def test_a_failed_confirmation_declines_with_the_decline_code() -> None:
    error = {"code": "card_declined", "decline_code": "do_not_honor", "message": "Your card was declined."}
    intent = {"id": "pi_1", "status": "requires_payment_method", "last_payment_error": error}

    result = payment_result(intent)

    assert (result.outcome, result.decline_code, result.message) == (
        Outcome.DECLINED,
        "do_not_honor",
        "Your card was declined.",
    )


def test_next_action_keeps_the_redirect_and_drops_secrets() -> None:
    intent = {
        "id": "pi_1",
        "status": "requires_action",
        "client_secret": "pi_1_secret_abc",
        "next_action": {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": "https://hooks.stripe.com/3ds/x", "return_url": "https://shop/back"},
        },
    }

    result = payment_result(intent)

    assert result.next_action == {
        "type": "redirect_to_url",
        "redirect_to_url": {"url": "https://hooks.stripe.com/3ds/x", "return_url": "https://shop/back"},
    }
    assert "secret" not in repr(result)
    assert next_action({"next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {"client_secret": "x"}}}) == {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {},
    }


def test_refund_statuses() -> None:
    pending = refund_result({"id": "re_1", "status": "pending", "amount": 5})
    assert (pending.outcome, pending.details["pending"]) == (Outcome.APPROVED, True)
    assert "pending" not in refund_result({"id": "re_1", "status": "succeeded", "amount": 5}).details
    failed = refund_result({"id": "re_1", "status": "failed", "failure_reason": "expired_or_canceled_card"})
    assert (failed.outcome, failed.decline_code) == (Outcome.DECLINED, "expired_or_canceled_card")


@pytest.mark.parametrize(
    ("param", "field"),
    [
        ("payment_method", "payment_method"),
        ("amount_to_capture", "amount"),
        ("customer", "customer_id"),
        ("metadata[order]", "metadata"),
        ("items[0][price]", "price"),
        ("items[0][quantity]", "quantity"),
        ("expand[0]", None),
        ("capture_method", None),
        (None, None),
    ],
)
def test_stripe_params_to_our_fields(param: str | None, field: str | None) -> None:
    assert our_field(param) == field


def test_messages_lose_keys_tokens_client_secrets_and_card_numbers() -> None:
    message = "sk_test_abc123 used pm_1Nabc and tok_visa, secret pi_3Mx_secret_Yz, card 4242 4242 4242 4242"

    cleaned = safe_message(message) or ""

    for leaked in ("sk_test_abc123", "pm_1Nabc", "tok_visa", "pi_3Mx_secret_Yz", "4242 4242 4242 4242"):
        assert leaked not in cleaned


def test_retry_after_is_read_case_insensitively() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_seconds(None) is None
