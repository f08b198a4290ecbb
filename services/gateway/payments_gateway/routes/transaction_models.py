"""Request bodies of the transaction routes (API.md, *Transactions*)."""

from __future__ import annotations

from typing import Annotated, Literal

from payments_shared.settings import ProviderName
from pydantic import Field, StringConstraints

from payments_gateway.schemas import Amount, Currency, Description, Metadata, ObjectId, StrictModel

PaymentMethodToken = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class OpaquePaymentMethod(StrictModel):
    """Accept.js opaque data."""

    data_descriptor: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    data_value: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class PaymentBody(StrictModel):
    """charge / authorize"""

    amount: Amount
    currency: Currency
    payment_method: PaymentMethodToken | OpaquePaymentMethod | None = Field(
        None, description="Required, unless `customer_id` names a customer with a default payment method."
    )
    provider: ProviderName | None = None
    customer_id: ObjectId | None = None
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class CaptureBody(StrictModel):
    transaction_id: ObjectId
    amount: Amount | None = None


RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


class RefundBody(StrictModel):
    transaction_id: ObjectId
    amount: Amount | None = None
    reason: RefundReason | None = None


class VoidBody(StrictModel):
    transaction_id: ObjectId
