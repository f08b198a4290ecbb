"""API.md's limits on money: an amount is an integer in the currency's minor unit, 1 to 99 999 999 (Stripe's
own limit for most currencies). The most one charge may move, whatever adds up to it (a subscription's amount
times its quantity, per period). A subscription bills 1 to MAX_QUANTITY units per period."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Final

MIN_AMOUNT: Final = 1
MAX_AMOUNT: Final = 99_999_999
MAX_QUANTITY: Final = 1_000_000

# A currency's minor unit as Stripe counts it (API.md: where it is silent, do what Stripe does). Stripe keeps ISK,
# HUF and TWD two-decimal in amounts though ISO 4217 or payouts treat them otherwise, and MGA zero-decimal.
_ZERO_DECIMAL: Final = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
_THREE_DECIMAL: Final = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
_LARGEST_DIGITS: Final = 30
# Stripe takes amounts in three-decimal currencies in PaymentIntents (charge, authorize, capture) and Refunds only
# in multiples of 10 of the minor unit, "to ensure compatibility with Stripe's payments partners"
# (stripe.com/docs/currencies, three-decimal currencies: 5.124 KWD is to be sent as 5120 or 5130).
STRIPE_THREE_DECIMAL_STEP: Final = 10


def minor_unit_exponent(currency: str) -> int:
    """How many decimals the currency's major unit has in API amounts: 1099 usd is 10.99, 500 jpy is 500."""
    code = currency.lower()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def to_major_units(amount: int, currency: str) -> Decimal:
    """An API amount as a decimal in the currency's major unit, with the currency's decimals (1000 usd: 10.00)."""
    return Decimal(amount).scaleb(-minor_unit_exponent(currency))


def to_minor_units(amount: Decimal, currency: str) -> int:
    """A major-unit decimal as an API amount; a fraction of the minor unit is dropped (10.999 usd: 1099).
    OverflowError past 10**30: turning 1E+10000000 into an int would take the process minutes."""
    if amount.is_finite() and amount.adjusted() > _LARGEST_DIGITS:
        raise OverflowError("amount too large")
    return int(amount.scaleb(minor_unit_exponent(currency)).to_integral_value(rounding=ROUND_DOWN))


def provider_amount_refusal(provider: str, currency: str, amount: int) -> str | None:
    """Why `provider` refuses `amount` in `currency` (lower case), or None when it takes it."""
    step = STRIPE_THREE_DECIMAL_STEP
    if provider != "stripe" or amount % step == 0 or minor_unit_exponent(currency) != 3:
        return None
    lower, higher = amount - amount % step, amount - amount % step + step
    nearest = f"{lower} or {higher}" if lower else str(higher)
    return (
        f"Stripe takes {currency} amounts only in multiples of {step} of its minor unit: "
        f"{amount} is not one (e.g. {nearest})."
    )
