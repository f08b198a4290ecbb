"""The `created` filter of a list, read as one half-open range of microseconds [gte_us, lt_us).

Two spellings, combinable (the tightest bound wins):
- Stripe's: `created=N` and `created[gt|gte|lt|lte]=N`, N an integer of Unix seconds. As on Stripe, an object's
  creation time counts in whole seconds, so `created[lte]=N` includes an object created at N.5 and
  `created[gt]=N` does not.
- this API's own `created_gte` / `created_lt`: Unix seconds or an ISO 8601 time (naive times are UTC).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from payments_shared.errors import invalid
from payments_shared.projections.readmodel import epoch_us
from payments_shared.timestamps import unix_seconds_iso

SECOND_US: Final = 1_000_000
# Stripe's operator → (which bound it sets, seconds added to N for that bound)
_OPERATORS: Final = {"gt": ("gte", 1), "gte": ("gte", 0), "lt": ("lt", 0), "lte": ("lt", 1)}
PARAMETERS: Final = ("created", *(f"created[{op}]" for op in _OPERATORS), "created_gte", "created_lt")
_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")


@dataclass(frozen=True)
class CreatedRange:
    gte_us: int | None = None
    lt_us: int | None = None


def created_range(params: Mapping[str, str]) -> CreatedRange:
    """The range the request's `created` parameters allow; a bad value is 400 naming its parameter."""
    lower, upper = [_moment(params, "created_gte")], [_moment(params, "created_lt")]
    exact = _unix_second(params, "created")
    if exact is not None:
        lower.append(exact)
        upper.append(exact + SECOND_US)
    for operator, (bound, shift) in _OPERATORS.items():
        second = _unix_second(params, f"created[{operator}]")
        if second is not None:
            (lower if bound == "gte" else upper).append(second + shift * SECOND_US)
    return CreatedRange(
        gte_us=max((us for us in lower if us is not None), default=None),
        lt_us=min((us for us in upper if us is not None), default=None),
    )


def _unix_second(params: Mapping[str, str], name: str) -> int | None:
    """An integer of Unix seconds, as Stripe takes it → the start of that second in microseconds."""
    raw = params.get(name)
    if raw is None:
        return None
    if _INTEGER.fullmatch(raw) is None or unix_seconds_iso(int(raw)) is None:
        raise invalid(f"{name} must be an integer Unix timestamp (seconds).", param=name)
    return int(raw) * SECOND_US


def _moment(params: Mapping[str, str], name: str) -> int | None:
    """A Unix time in seconds or an ISO 8601 time → microseconds since the epoch."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        if raw.lstrip("-").isdigit():
            raw = unix_seconds_iso(int(raw)) or ""  # "" for what no datetime holds (and SQLite could not bind)
        return epoch_us(raw.replace(" ", "+"))  # a `+` in a query string arrives as a space
    except (ValueError, OverflowError):
        raise invalid(f"{name} must be a Unix timestamp or an ISO 8601 time.", param=name) from None
