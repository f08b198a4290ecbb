"""Request bodies of the billing routes (API.md, *Customers* and *Subscriptions*), built from the gateway's
strict building blocks; what one field cannot say alone (`price` XOR amount/currency/interval, an email that may
not be cleared) is checked by `check_*` after validation, naming the field."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from payments_shared.errors import invalid
from payments_shared.money import MAX_QUANTITY
from payments_shared.settings import ProviderName
from pydantic import AfterValidator, Field, StringConstraints

from payments_gateway.routes.transaction_models import OpaquePaymentMethod, PaymentMethodToken
from payments_gateway.schemas import Amount, Currency, Description, Metadata, ObjectId, StrictModel

MAX_EMAIL_LENGTH = 512
MAX_NAME_LENGTH = 256
MAX_PHONE_LENGTH = 20
MAX_PRICE_ID_LENGTH = 255
MAX_TRIAL_DAYS = 730  # Stripe's limit
# One dot-separated domain of at least two labels, a local part without spaces, control characters or a second @.
_EMAIL = re.compile(
    r"^[^@\s\x00-\x1f\x7f-\x9f]{1,64}@(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):  # not match: `$` also matches before a final newline
        raise ValueError("must be an email address such as jenny@example.com")
    return value


Email = Annotated[str, StringConstraints(max_length=MAX_EMAIL_LENGTH), AfterValidator(_email)]


def _unset_when_empty(value: str) -> str | None:
    """As at Stripe, an empty value unsets the field: a PUT clears it (as `null` does), a POST leaves it unset."""
    return value or None


Name = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH), AfterValidator(_unset_when_empty)]
Phone = Annotated[str, StringConstraints(max_length=MAX_PHONE_LENGTH), AfterValidator(_unset_when_empty)]
CustomerDescription = Annotated[Description, AfterValidator(_unset_when_empty)]
PriceId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PRICE_ID_LENGTH)]
Interval = Literal["day", "week", "month", "year"]
IntervalCount = Annotated[int, Field(ge=1)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
TrialDays = Annotated[int, Field(ge=1, le=MAX_TRIAL_DAYS)]
PaymentMethod = PaymentMethodToken | OpaquePaymentMethod


class CustomerBody(StrictModel):
    email: Email
    name: Name | None = None
    phone: Phone | None = None
    description: CustomerDescription | None = None
    metadata: Metadata = Field(default_factory=dict)
    provider: ProviderName | None = None
    payment_method: PaymentMethod | None = None


class CustomerUpdateBody(StrictModel):
    """PUT: any of the create fields; only those sent change (metadata is merged, "" removes a key)."""

    NOT_NULL: ClassVar = ("email", "metadata", "provider", "payment_method")  # may be left out, not cleared

    email: Email | None = None
    name: Name | None = None
    phone: Phone | None = None
    description: CustomerDescription | None = None
    metadata: Metadata | None = None
    provider: ProviderName | None = None
    payment_method: PaymentMethod | None = None


class SubscriptionBody(StrictModel):
    customer_id: ObjectId
    price: PriceId | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    interval: Interval | None = None
    interval_count: IntervalCount | None = None
    quantity: Quantity = 1
    trial_days: TrialDays | None = None
    payment_method: PaymentMethod | None = None
    metadata: Metadata = Field(default_factory=dict)


class SubscriptionUpdateBody(StrictModel):
    NOT_NULL: ClassVar = ("quantity", "price", "amount", "cancel_at_period_end", "metadata")

    quantity: Quantity | None = None
    price: PriceId | None = None
    amount: Amount | None = None
    cancel_at_period_end: bool | None = None
    metadata: Metadata | None = None


class CancelBody(StrictModel):
    at_period_end: bool = False


def check_customer_update(sent: dict[str, object]) -> None:
    for name in CustomerUpdateBody.NOT_NULL:
        if name in sent and sent[name] is None:
            raise invalid(f"{name} cannot be null.", param=name)


def check_subscription_terms(body: SubscriptionBody) -> None:
    """A `price`, or an amount, currency and interval: exactly one of the two."""
    terms = {"amount": body.amount, "currency": body.currency, "interval": body.interval}
    if body.price is not None:
        for name, value in {**terms, "interval_count": body.interval_count}.items():
            if value is not None:
                raise invalid(f"Give either price or {name}, not both.", param=name)
        return
    for name, value in terms.items():
        if value is None:
            raise invalid(f"Missing required param: {name} (or give a price).", param=name)


def check_subscription_update(sent: dict[str, object]) -> None:
    if sent.get("price") is not None and sent.get("amount") is not None:
        raise invalid("Give either price or amount, not both.", param="amount")
    for name in SubscriptionUpdateBody.NOT_NULL:
        if name in sent and sent[name] is None:
            raise invalid(f"{name} cannot be null.", param=name)


class EmptyBody(StrictModel):
    """DELETE takes no parameters."""
