"""What every billing command handler works with: the streams, the providers by name, the clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payments_shared.errors import invalid
from payments_shared.messages import utc_now_iso
from payments_shared.providers.port import BillingProvider, OpaqueData, PaymentMethod

from payments_billing.streams import Origin, Streams
from payments_billing.times import parse_iso


@dataclass(frozen=True)
class BillingContext:
    streams: Streams
    providers: Mapping[str, BillingProvider]
    default_provider: str
    in_flight_window_s: float = 30.0  # a change requested longer ago than this was left by a crash

    def provider(self, name: str | None) -> BillingProvider:
        chosen = name or self.default_provider
        provider = self.providers.get(chosen)
        if provider is None:
            raise invalid(f"The {chosen} provider is not configured on this server.", param="provider")
        return provider


@dataclass(frozen=True)
class Call:
    """One command being handled: where it came from, its payload, the time it is handled at, and when it was first
    accepted (the same on every attempt: redeliveries, the journal's re-runs, a client's retry with its key)."""

    origin: Origin
    now: str
    accepted_at: str = ""  # "": the command's own issued_at

    @classmethod
    def of(cls, origin: Origin, accepted_at: str | None = None) -> Call:
        return cls(origin, utc_now_iso(), accepted_at or "")

    @property
    def accepted(self) -> datetime:
        return parse_iso(self.accepted_at or self.origin.command.issued_at)

    @property
    def payload(self) -> Mapping[str, Any]:
        return self.origin.command.payload

    @property
    def workspace(self) -> str:
        return self.origin.command.workspace

    @property
    def command_id(self) -> str:
        return self.origin.command.command_id


def payment_method(value: Any) -> PaymentMethod | None:
    """A payload's payment method: a token, Accept.js opaque data, or none."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return OpaqueData(str(value["data_descriptor"]), str(value["data_value"]))
    raise invalid("payment_method must be a token or opaque data.", param="payment_method")


def string_map(value: Any) -> dict[str, str]:
    return {str(key): str(item) for key, item in (value or {}).items()}
