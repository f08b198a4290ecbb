"""Calling a provider for one open operation, with the operation's command id as the idempotency key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from payments_shared.providers.port import (
    ClaimsOn,
    OpaqueData,
    Outcome,
    PaymentMethod,
    PaymentProvider,
    PaymentRef,
    PaymentRequest,
    ProviderResult,
)

from payments_transactions.domain.state import Operation, OperationKind, Transaction

logger = logging.getLogger(__name__)


def parse_payment_method(value: Any) -> PaymentMethod:
    """The payload's payment_method: a token string or Accept.js opaque data."""
    if isinstance(value, Mapping):
        return OpaqueData(str(value["data_descriptor"]), str(value["data_value"]))
    return str(value)


def describe_payment_method(method: PaymentMethod) -> dict[str, Any]:
    """What the event store keeps: the token, or only the descriptor of opaque data (never `data_value`)."""
    if isinstance(method, OpaqueData):
        return {"type": "opaque_data", "data_descriptor": method.data_descriptor}
    return {"type": "token", "token": method}


def stored_payment_method(description: Mapping[str, Any]) -> PaymentMethod:
    """The payment method for a re-drive without the original message. Opaque data cannot be re-sent (its
    value was never stored): the adapter gets an empty value and must look the payment up by its key first."""
    if description.get("type") == "opaque_data":
        return OpaqueData(str(description.get("data_descriptor", "")), "")
    return str(description.get("token", ""))


def _payment_ref(transaction: Transaction, refund_amount: int = 0) -> PaymentRef:
    return PaymentRef(
        reference=transaction.provider_reference or "",
        amount_authorized=transaction.amount_authorized,
        amount_captured=transaction.amount_captured,
        currency=transaction.currency,
        details=dict(transaction.provider_details),
        known_credits=transaction.known_credits(refund_amount),
    )


async def _call(
    provider: PaymentProvider,
    transaction: Transaction,
    operation: Operation,
    method: PaymentMethod | None,
    first_attempt: bool,
    claims: ClaimsOn | None,
) -> ProviderResult:
    key = operation.command_id
    amount = operation.amount or 0
    earlier_attempt_at = None if first_attempt else operation.requested_at
    if operation.kind is OperationKind.PAYMENT:
        request = PaymentRequest(
            idempotency_key=key,
            amount=transaction.amount,
            currency=transaction.currency,
            payment_method=method if method is not None else stored_payment_method(transaction.payment_method),
            capture=transaction.kind == "charge",
            customer_reference=transaction.customer_reference,
            description=transaction.description,
            metadata=dict(transaction.metadata),
            earlier_attempt_at=earlier_attempt_at,
            claims=claims,
        )
        return await provider.pay(request)
    if operation.kind is OperationKind.CAPTURE:
        return await provider.capture(_payment_ref(transaction), amount, key)
    if operation.kind is OperationKind.REFUND:
        payment = _payment_ref(transaction, refund_amount=amount)
        return await provider.refund(payment, amount, key, operation.reason, earlier_attempt_at)
    return await provider.void(_payment_ref(transaction), key)


async def call_provider(
    provider: PaymentProvider,
    transaction: Transaction,
    operation: Operation,
    method: PaymentMethod | None,
    timeout_s: float,
    first_attempt: bool = False,
    claims: ClaimsOn | None = None,
) -> ProviderResult:
    """The provider's answer; no answer in time is a retryable failure (the same key makes a retry safe).
    The worker's providers are wrapped (payments_shared.providers.resilience): circuit breaker, retries and a
    per-attempt timeout happen there; `timeout_s` is only the outer bound of the whole call. `claims`: what other
    transactions claim of provider objects (a payment re-drive never adopts one another transaction recorded)."""
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: no extra task, and a cancel is never swallowed
            return await _call(provider, transaction, operation, method, first_attempt, claims)
    except TimeoutError:
        logger.warning("provider call timed out", extra={"provider": provider.name, "operation": operation.kind.value})
        return ProviderResult(Outcome.RETRYABLE, message="The provider did not answer in time.", retry_after=1.0)
