"""The ISO 4217 currency codes a payment may be in: every active code except the non-currency X-codes
(precious metals, bond-market units, SDR, testing, "no currency"), and what a provider asks of a currency's amounts."""

from __future__ import annotations

from typing import Final

from payments_shared.errors import ApiError, invalid
from payments_shared.money import minor_unit_exponent

# Stripe takes amounts in three-decimal currencies (bhd, jod, kwd, omr, tnd) in PaymentIntents (charge, authorize,
# capture) and Refunds only in multiples of 10 of the minor unit, "to ensure compatibility with Stripe's payments
# partners" (stripe.com/docs/currencies, three-decimal currencies: 5.124 KWD is to be sent as 5120 or 5130).
STRIPE_THREE_DECIMAL_STEP: Final = 10

ISO_4217_CODES = frozenset(
    (
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BOV",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHE",
        "CHF",
        "CHW",
        "CLF",
        "CLP",
        "CNY",
        "COP",
        "COU",
        "CRC",
        "CUC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MXV",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SLL",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "USN",
        "UYI",
        "UYU",
        "UYW",
        "UZS",
        "VED",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XCD",
        "XCG",
        "XOF",
        "XPF",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
        "ZWL",
    )
)


def normalise_currency(code: str) -> str:
    """The lower-case code, or ValueError when `code` (any case) is not an ISO 4217 currency."""
    if code.upper() not in ISO_4217_CODES:
        raise ValueError("must be a three-letter ISO 4217 currency code, e.g. usd")
    return code.lower()


def provider_amount_error(provider: str, currency: str, amount: int) -> ApiError | None:
    """400 naming `amount` for an amount `provider` refuses in `currency` (lower case), or None."""
    step = STRIPE_THREE_DECIMAL_STEP
    if provider != "stripe" or amount % step == 0 or minor_unit_exponent(currency) != 3:
        return None
    lower = amount - amount % step
    message = (
        f"Stripe takes {currency} amounts only in multiples of {step} of its minor unit: "
        f"{amount} is not one (e.g. {lower or step} or {lower + step})."
    )
    return invalid(message, param="amount")


def may_be_refused(amount: int | None) -> bool:
    """Whether `amount` may be one a provider refuses in some currency (then the currency is worth reading)."""
    return amount is not None and amount % STRIPE_THREE_DECIMAL_STEP != 0
