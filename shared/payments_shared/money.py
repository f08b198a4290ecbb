"""API.md's limits on money: an amount is an integer in the currency's minor unit, 1 to 99 999 999 (Stripe's
own limit for most currencies). The most one charge may move, whatever adds up to it (a subscription's amount
times its quantity, per period). A subscription bills 1 to MAX_QUANTITY units per period."""

from __future__ import annotations

from typing import Final

MIN_AMOUNT: Final = 1
MAX_AMOUNT: Final = 99_999_999
MAX_QUANTITY: Final = 1_000_000
