"""The answers' shapes, for the OpenAPI document only (the workers build the JSON: payments_transactions.views,
payments_billing's `to_api`). API.md's fields are required; extensions (a transaction's `dispute`, a
subscription's `price` and `trial_end`) are listed, and further fields are allowed, as API.md allows extensions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal[
    "pending", "requires_action", "authorized", "captured", "partially_refunded", "refunded", "failed", "voided"
]
SubscriptionStatus = Literal["incomplete", "trialing", "active", "past_due", "unpaid", "canceled"]
Moment = str  # ISO 8601, UTC, microseconds: 2026-11-28T17:41:45.480270Z


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class Refund(_Shape):
    id: str
    amount: int
    status: str
    created_at: Moment
    failure_reason: str | None = Field(None, description="Only once the refund failed at the provider.")


class Dispute(_Shape):
    status: Any
    reason: Any
    amount: Any
    created_at: Any


class Transaction(_Shape):
    id: str
    object: Literal["transaction"]
    workspace: str
    status: Status
    amount: int
    currency: str
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    provider: str
    provider_reference: str | None
    customer_id: str | None
    description: str | None
    metadata: dict[str, str]
    refunds: list[Refund]
    failure_code: str | None
    failure_message: str | None
    next_action: dict[str, Any] | None
    created_at: Moment
    updated_at: Moment
    dispute: Dispute | None = Field(None, description="The latest dispute the provider reported, or null.")


class AuditEvent(_Shape):
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = Field(description="actor, workspace, correlation_id, causation_id, occurred_at, …")
    stream_version: int
    position: int


class AuditTrail(_Shape):
    data: list[AuditEvent]


class Customer(_Shape):
    id: str
    object: Literal["customer"]
    email: str
    name: str | None
    phone: str | None
    description: str | None
    metadata: dict[str, str]
    provider: str
    provider_reference: str | None
    default_payment_method: str | None
    created_at: Moment
    updated_at: Moment


class DeletedCustomer(_Shape):
    id: str
    object: Literal["customer"]
    deleted: Literal[True]


class Subscription(_Shape):
    id: str
    object: Literal["subscription"]
    customer_id: str
    status: SubscriptionStatus
    amount: int
    currency: str
    interval: Literal["day", "week", "month", "year"]
    interval_count: int
    quantity: int
    current_period_start: Moment | None
    current_period_end: Moment | None
    cancel_at_period_end: bool
    canceled_at: Moment | None
    provider: str
    provider_reference: str | None
    metadata: dict[str, str]
    created_at: Moment
    updated_at: Moment
    price: str | None = None
    trial_end: Moment | None = None


class _Page(_Shape):
    object: Literal["list"]
    has_more: bool
    url: str
    projection_position: int = Field(description="The event-store position the page reflects.")


class TransactionList(_Page):
    data: list[Transaction]


class CustomerList(_Page):
    data: list[Customer]


class SubscriptionList(_Page):
    data: list[Subscription]


API = "/api/v1/payments"


def _billing_routes(
    plural: str, shape: type[BaseModel], page: type[BaseModel]
) -> dict[tuple[str, str], type[BaseModel]]:
    """Create, read, update and list of `customers` or `subscriptions`."""
    one = f"{API}/{plural}/{{{plural[:-1]}_id}}"
    return {
        ("post", f"{API}/{plural}"): shape,
        ("get", one): shape,
        ("put", one): shape,
        ("get", f"{API}/{plural}"): page,
    }


# (method, path) → the shape of its success answer
SUCCESS_SHAPES: dict[tuple[str, str], type[BaseModel]] = {
    **{("post", f"{API}/{name}"): Transaction for name in ("charge", "authorize", "capture", "refund", "void")},
    ("get", f"{API}/transactions/{{transaction_id}}"): Transaction,
    ("get", f"{API}/transactions/{{transaction_id}}/events"): AuditTrail,
    ("get", f"{API}/transactions"): TransactionList,
    **_billing_routes("customers", Customer, CustomerList),
    ("delete", f"{API}/customers/{{customer_id}}"): DeletedCustomer,
    **_billing_routes("subscriptions", Subscription, SubscriptionList),
    ("post", f"{API}/subscriptions/{{subscription_id}}/cancel"): Subscription,
}
