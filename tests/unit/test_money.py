"""Amounts in API units (a currency's minor unit, as Stripe counts it) and in major units (Authorize.net's)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from payments_shared.money import minor_unit_exponent, provider_amount_refusal, to_major_units, to_minor_units


@pytest.mark.parametrize(
    ("currencies", "exponent"),
    [
        (("usd", "EUR", "gbp"), 2),
        (("isk", "huf", "twd"), 2),  # Stripe keeps these two-decimal in amounts
        (("jpy", "krw", "xof", "xaf", "pyg", "mga", "ugx", "clp"), 0),
        (("bhd", "jod", "kwd", "omr", "tnd"), 3),
    ],
)
def test_the_minor_unit_is_stripes(currencies: tuple[str, ...], exponent: int) -> None:
    assert {minor_unit_exponent(code) for code in currencies} == {exponent}


@pytest.mark.parametrize(
    ("amount", "currency", "major"),
    [
        (1099, "usd", Decimal("10.99")),
        (5, "eur", Decimal("0.05")),
        (1000, "isk", Decimal("10.00")),
        (500, "jpy", Decimal(500)),
        (1000, "xof", Decimal(1000)),
        (1234, "kwd", Decimal("1.234")),
    ],
)
def test_amounts_go_to_major_units_and_back(amount: int, currency: str, major: Decimal) -> None:
    assert to_major_units(amount, currency) == major
    assert str(to_major_units(amount, currency)) == str(major)  # as many decimals as the currency has
    assert to_minor_units(major, currency) == amount


def test_a_fraction_of_the_minor_unit_is_dropped() -> None:
    assert to_minor_units(Decimal("10.999"), "usd") == 1099
    assert to_minor_units(Decimal("500.9"), "jpy") == 500


@pytest.mark.parametrize("value", ["1E+31", "1E+10000000", "Infinity", "-Infinity"])
def test_an_amount_no_api_amount_can_be_is_an_overflow_at_once(value: str) -> None:
    with pytest.raises(OverflowError):
        to_minor_units(Decimal(value), "usd")


@pytest.mark.parametrize(
    ("provider", "currency", "amount", "refused"),
    [
        ("stripe", "kwd", 1005, True),
        ("stripe", "bhd", 1, True),
        ("stripe", "kwd", 1000, False),
        ("stripe", "usd", 1005, False),
        ("stripe", "jpy", 1005, False),
        ("sandbox", "kwd", 1005, False),
        ("authorizenet", "jod", 1005, False),
    ],
)
def test_stripe_refuses_three_decimal_amounts_that_are_not_multiples_of_ten(
    provider: str, currency: str, amount: int, refused: bool
) -> None:
    refusal = provider_amount_refusal(provider, currency, amount)
    assert (refusal is not None) is refused
    if refusal is not None:
        assert str(amount) in refusal and "multiples of 10" in refusal


@pytest.mark.parametrize(("amount", "nearest"), [(5, "(e.g. 10)."), (1234, "(e.g. 1230 or 1240).")])
def test_a_refused_three_decimal_amount_names_the_nearest_it_would_take(amount: int, nearest: str) -> None:
    refusal = provider_amount_refusal("stripe", "kwd", amount)
    assert refusal is not None and refusal.endswith(nearest)  # below 10 there is one: "10 or 10" said it twice
