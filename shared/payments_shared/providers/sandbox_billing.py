"""The sandbox's customers and subscriptions (API.md *Sandbox provider*): deterministic, no network.

It shares the sandbox payment provider's durable ledger (one row per idempotency key, first write wins), so a
repeated call with a key returns the recorded result and creates nothing twice. Subscriptions bill on creation
unless they start with a trial: the payment method's test-card outcome decides `active` (approved) or
`incomplete` (declined, or authentication required). A small price catalogue stands in for provider prices.
Periods are left to the caller (the billing domain computes them from the interval), so `details` carries
`status` and, for a price, the amount, currency and interval it stands for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from payments_shared.money import MAX_AMOUNT
from payments_shared.providers.port import (
    CustomerRequest,
    OpaqueData,
    Outcome,
    PaymentMethod,
    ProviderResult,
    SubscriptionChange,
    SubscriptionRequest,
)
from payments_shared.providers.sandbox import NAME, TEST_CARDS, LedgerEntry, SandboxLedger, reference_for


@dataclass(frozen=True)
class SandboxPrice:
    amount: int
    currency: str
    interval: str
    interval_count: int = 1

    def details(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "currency": self.currency,
            "interval": self.interval,
            "interval_count": self.interval_count,
        }


PRICES: Final = {
    "price_sandbox_weekly": SandboxPrice(300, "usd", "week"),
    "price_sandbox_monthly": SandboxPrice(1000, "usd", "month"),
    "price_sandbox_quarterly": SandboxPrice(2700, "usd", "month", 3),
    "price_sandbox_yearly": SandboxPrice(10000, "usd", "year"),
}


def invalid(param: str, message: str) -> ProviderResult:
    return ProviderResult(Outcome.PERMANENT, message=message, details={"invalid_param": param})


def payment_method_problem(method: PaymentMethod | None) -> ProviderResult | None:
    """Why the sandbox refuses this payment method to attach, or None when it knows it."""
    if method is None:
        return None
    if isinstance(method, OpaqueData) or method not in TEST_CARDS:
        known = ", ".join(TEST_CARDS)
        return invalid("payment_method", f"The sandbox does not know this payment_method; use one of {known}.")
    return None


def price_problem(price: str | None) -> ProviderResult | None:
    if price is None or price in PRICES:
        return None
    return invalid("price", f"No such price; the sandbox has {', '.join(PRICES)}.")


def first_invoice(method: PaymentMethod | None, reference: str) -> ProviderResult:
    """The outcome of billing a new subscription's first period with `method`."""
    if method is None:
        return invalid("payment_method", "The customer has no default payment method: give payment_method.")
    problem = payment_method_problem(method)
    if problem is not None:
        return problem
    assert isinstance(method, str)
    card = TEST_CARDS[method]
    if card.outcome is Outcome.APPROVED:
        return ProviderResult(Outcome.APPROVED, reference, details={"status": "active"})
    if card.outcome in (Outcome.DECLINED, Outcome.REQUIRES_ACTION):
        return ProviderResult(
            card.outcome, reference, card.decline_code, card.message, details={"status": "incomplete"}
        )
    return ProviderResult(card.outcome, message=card.message)


def period_amount_problem(price: str | None, quantity: int, param: str = "quantity") -> ProviderResult | None:
    """A price's period bill (its amount × quantity) is one charge, refused above the largest amount (as Stripe
    refuses an invoice above its own limit). 400 naming `param`."""
    total = PRICES[price].amount * quantity if price is not None else 0
    if total <= MAX_AMOUNT:
        return None
    return invalid(param, f"{price} × quantity {quantity} bills {total} a period; at most {MAX_AMOUNT}.")


def currency_problem(price: str | None, currency: str | None) -> ProviderResult | None:
    """A subscription keeps its currency (as at Stripe): a new price must bill in it."""
    if price is None or currency is None or PRICES[price].currency == currency.lower():
        return None
    return invalid("price", f"{price} bills in {PRICES[price].currency}; this subscription bills in {currency}.")


def change_problem(change: SubscriptionChange) -> ProviderResult | None:
    """Why the sandbox refuses this change before applying anything, or None."""
    quantity = change.new_quantity or 1
    param = "quantity" if change.quantity is not None else "price"
    return (
        price_problem(change.price)
        or currency_problem(change.price, change.currency)
        or period_amount_problem(change.price, quantity, param)
    )


def subscription_result(request: SubscriptionRequest, reference: str) -> ProviderResult:
    problem = (
        price_problem(request.price)
        or period_amount_problem(request.price, request.quantity)
        or payment_method_problem(request.payment_method)
    )
    if problem is not None:
        return problem
    price_details = PRICES[request.price].details() if request.price else {}
    if request.trial_days:
        return ProviderResult(Outcome.APPROVED, reference, details={"status": "trialing", **price_details})
    result = first_invoice(request.payment_method, reference)
    if result.reference is None:
        return result
    return ProviderResult(
        result.outcome, reference, result.decline_code, result.message, details={**result.details, **price_details}
    )


class SandboxBilling:
    """`BillingProvider` for the sandbox, over the sandbox payment provider's ledger."""

    name = NAME

    def __init__(self, ledger: SandboxLedger) -> None:
        self.ledger = ledger

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        reference = reference_for("cus_sbx", request.idempotency_key)
        problem = payment_method_problem(request.payment_method)
        details: Mapping[str, Any] = {}
        if isinstance(request.payment_method, str):
            details = {"default_payment_method": request.payment_method}
        result = problem or ProviderResult(Outcome.APPROVED, reference, details=details)
        return await self._once(request.idempotency_key, "create_customer", reference, None, 0, lambda: result)

    async def update_customer(self, reference: str, request: CustomerRequest) -> ProviderResult:
        def decide() -> ProviderResult:
            if self.ledger.customer_deleted(reference):  # as Stripe answers "No such customer"
                message = "No such customer: it was deleted."
                return ProviderResult(Outcome.PERMANENT, message=message, details={"stripe_code": "resource_missing"})
            details: Mapping[str, Any] = {}
            if isinstance(request.payment_method, str):
                details = {"default_payment_method": request.payment_method}
            problem = payment_method_problem(request.payment_method)
            return problem or ProviderResult(Outcome.APPROVED, reference, details=details)

        return await self._once(request.idempotency_key, "update_customer", None, reference, 0, decide)

    async def delete_customer(self, reference: str, idempotency_key: str) -> ProviderResult:
        result = ProviderResult(Outcome.APPROVED, reference, details={"deleted": True})
        return await self._once(idempotency_key, "delete_customer", None, reference, 0, lambda: result)

    async def check_customer_deletable(self, reference: str, ours: Sequence[str]) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)  # the sandbox's deletion ends every subscription

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        reference = reference_for("sub_sbx", request.idempotency_key)
        price = PRICES.get(request.price or "")
        amount = (price.amount if price else request.amount) * request.quantity
        return await self._once(
            request.idempotency_key,
            "create_subscription",
            reference,
            request.customer_reference,
            amount,
            lambda: subscription_result(request, reference),
        )

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult:
        def decide() -> ProviderResult:
            if self.ledger.subscription_canceled(reference):  # as Stripe and ARB refuse to bill a canceled one
                if change.changes_billing:
                    return ProviderResult(Outcome.PERMANENT, message="The subscription is canceled.")
                return ProviderResult(Outcome.APPROVED, reference)  # its metadata, as Stripe takes
            problem = change_problem(change)
            if problem is not None:
                return problem
            details: dict[str, Any] = PRICES[change.price].details() if change.price else {}
            if change.cancel_at_period_end is not None:
                details["cancel_at_period_end"] = change.cancel_at_period_end
            return ProviderResult(Outcome.APPROVED, reference, details=details)

        return await self._once(change.idempotency_key, "update_subscription", None, reference, 0, decide)

    async def cancel_subscription(self, reference: str, at_period_end: bool, idempotency_key: str) -> ProviderResult:
        details = {"cancel_at_period_end": True} if at_period_end else {"status": "canceled"}
        result = ProviderResult(Outcome.APPROVED, reference, details=details)
        return await self._once(idempotency_key, "cancel_subscription", None, reference, 0, lambda: result)

    async def _once(
        self,
        idempotency_key: str,
        operation: str,
        reference: str | None,
        about: str | None,
        amount: int,
        decide: Callable[[], ProviderResult],
    ) -> ProviderResult:
        """The result recorded for this key, or decide one and record it (the first record wins a race)."""
        recorded = self.ledger.lookup(idempotency_key)
        if recorded is not None:
            return recorded
        result = decide()
        created = reference if result.reference is not None else None
        entry = LedgerEntry(idempotency_key, operation, created, about, amount, result.outcome.value, False)
        return await self.ledger.record(entry, None, result)
