"""The sandbox's customers and subscriptions: deterministic outcomes, one ledger row per idempotency key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from payments_shared.providers.port import (
    CustomerRequest,
    OpaqueData,
    Outcome,
    SubscriptionChange,
    SubscriptionRequest,
)
from payments_shared.providers.sandbox import SandboxLedger
from payments_shared.providers.sandbox_billing import SandboxBilling


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxBilling]:
    ledger = SandboxLedger(tmp_path / "sandbox.db")
    yield SandboxBilling(ledger)
    ledger.close()


def subscription(key: str, **overrides: object) -> SubscriptionRequest:
    fields: dict[str, object] = {
        "idempotency_key": key,
        "customer_reference": "cus_sbx_1",
        "amount": 1000,
        "currency": "usd",
        "interval": "month",
        "interval_count": 1,
        "quantity": 2,
        "payment_method": "pm_card_visa",
    }
    fields.update(overrides)
    return SubscriptionRequest(**fields)  # type: ignore[arg-type]


async def test_customer_reference_is_derived_from_the_key_and_replayed(sandbox: SandboxBilling) -> None:
    first = await sandbox.create_customer(
        CustomerRequest("key-1", email="a@example.com", payment_method="pm_card_visa")
    )
    again = await sandbox.create_customer(CustomerRequest("key-1", email="a@example.com"))
    other = await sandbox.create_customer(CustomerRequest("key-2", email="a@example.com"))
    assert first.outcome is Outcome.APPROVED and first.reference is not None
    assert first.reference.startswith("cus_sbx_")
    assert again == first  # the recorded result, not a second customer
    assert other.reference != first.reference
    assert first.details["default_payment_method"] == "pm_card_visa"
    assert sandbox.ledger.count() == 2


@pytest.mark.parametrize("method", ["pm_card_unknown", OpaqueData("COMMON.ACCEPT.INAPP.PAYMENT", "x")])
async def test_an_unknown_payment_method_is_an_invalid_parameter(sandbox: SandboxBilling, method: object) -> None:
    result = await sandbox.create_customer(CustomerRequest("key-1", payment_method=method))  # type: ignore[arg-type]
    assert result.outcome is Outcome.PERMANENT
    assert result.details["invalid_param"] == "payment_method"


async def test_a_declining_card_can_still_be_attached(sandbox: SandboxBilling) -> None:
    result = await sandbox.create_customer(CustomerRequest("key-1", payment_method="pm_card_chargeDeclined"))
    assert result.outcome is Outcome.APPROVED


@pytest.mark.parametrize(
    ("method", "outcome", "status"),
    [
        ("pm_card_visa", Outcome.APPROVED, "active"),
        ("pm_card_mastercard", Outcome.APPROVED, "active"),
        ("pm_card_chargeDeclined", Outcome.DECLINED, "incomplete"),
        ("pm_card_chargeDeclinedInsufficientFunds", Outcome.DECLINED, "incomplete"),
        ("pm_card_authenticationRequired", Outcome.REQUIRES_ACTION, "incomplete"),
    ],
)
async def test_a_subscription_bills_on_creation(
    sandbox: SandboxBilling, method: str, outcome: Outcome, status: str
) -> None:
    result = await sandbox.create_subscription(subscription("key-1", payment_method=method))
    assert (result.outcome, result.details["status"]) == (outcome, status)
    assert result.reference is not None and result.reference.startswith("sub_sbx_")


async def test_a_trial_does_not_bill(sandbox: SandboxBilling) -> None:
    result = await sandbox.create_subscription(
        subscription("key-1", trial_days=14, payment_method="pm_card_chargeDeclined")
    )
    assert (result.outcome, result.details["status"]) == (Outcome.APPROVED, "trialing")
    no_method = await sandbox.create_subscription(subscription("key-2", trial_days=7, payment_method=None))
    assert no_method.details["status"] == "trialing"


async def test_without_a_payment_method_nor_trial_it_is_refused(sandbox: SandboxBilling) -> None:
    result = await sandbox.create_subscription(subscription("key-1", payment_method=None))
    assert (result.outcome, result.details["invalid_param"]) == (Outcome.PERMANENT, "payment_method")


async def test_a_processing_error_is_permanent(sandbox: SandboxBilling) -> None:
    result = await sandbox.create_subscription(subscription("key-1", payment_method="pm_card_processingError"))
    assert result.outcome is Outcome.PERMANENT and "invalid_param" not in result.details


async def test_prices_come_from_the_catalogue(sandbox: SandboxBilling) -> None:
    result = await sandbox.create_subscription(subscription("key-1", price="price_sandbox_yearly", amount=0))
    assert result.details["amount"] == 10000 and result.details["interval"] == "year"
    unknown = await sandbox.create_subscription(subscription("key-2", price="price_nope"))
    assert unknown.details["invalid_param"] == "price"


async def test_update_and_cancel(sandbox: SandboxBilling) -> None:
    created = await sandbox.create_subscription(subscription("key-1"))
    assert created.reference is not None
    updated = await sandbox.update_subscription(
        created.reference, SubscriptionChange("key-2", price="price_sandbox_monthly")
    )
    assert updated.outcome is Outcome.APPROVED and updated.details["amount"] == 1000
    scheduled = await sandbox.cancel_subscription(created.reference, True, "key-3")
    assert scheduled.details == {"cancel_at_period_end": True}
    canceled = await sandbox.cancel_subscription(created.reference, False, "key-4")
    assert canceled.details == {"status": "canceled"}
    assert await sandbox.cancel_subscription(created.reference, True, "key-3") == scheduled
    assert sandbox.ledger.count() == 4


async def test_a_canceled_subscription_refuses_changes_as_stripe_and_arb_do(sandbox: SandboxBilling) -> None:
    """An update that lost a race with a cancel must not change a subscription no longer billed."""
    created = await sandbox.create_subscription(subscription("cmd-sub-gone"))
    assert created.reference is not None
    later = await sandbox.cancel_subscription(created.reference, True, "cmd-cancel-later")
    still = await sandbox.update_subscription(created.reference, SubscriptionChange("cmd-qty-1", quantity=3))
    assert (later.outcome, still.outcome) == (Outcome.APPROVED, Outcome.APPROVED)  # canceled at period end: not yet

    await sandbox.cancel_subscription(created.reference, False, "cmd-cancel-now")
    refused = await sandbox.update_subscription(created.reference, SubscriptionChange("cmd-qty-2", quantity=4))

    assert (refused.outcome, refused.message) == (Outcome.PERMANENT, "The subscription is canceled.")


async def test_the_ledger_is_durable(tmp_path: Path) -> None:
    first = SandboxBilling(SandboxLedger(tmp_path / "sandbox.db"))
    created = await first.create_subscription(subscription("key-1"))
    first.ledger.close()
    reopened = SandboxBilling(SandboxLedger(tmp_path / "sandbox.db"))
    try:
        assert (
            await reopened.create_subscription(subscription("key-1", payment_method="pm_card_chargeDeclined"))
            == created
        )
    finally:
        reopened.ledger.close()
