"""The transaction routes of API.md: charge, authorize, capture, refund, void, get, audit trail.

Each POST: authorise (permission, write budget) → Idempotency-Key → body (size limit, JSON, card-data guard,
strict validation) → command to the transactions worker → its reply unchanged. A charge or authorize whose
worker has not answered within RPC_TIMEOUT_S answers 202 with the transaction in `pending` (the worker then records
it, carried out or failed); any other command then answers 503 (it still completes: the same Idempotency-Key later
gets its result). A charge/authorize naming a customer found gone answers 409 `conflict` there instead (retry with
the same key): only an earlier request with its Idempotency-Key can have made its transaction (the worker looks for
it, else 404), so no 202 promises one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from payments_shared import ids
from payments_shared.errors import ApiError, invalid
from payments_shared.idempotency import in_progress
from payments_shared.messages import CUSTOMER_MISSING, TRANSACTIONS_QUEUE, utc_now_iso
from payments_shared.money import provider_amount_refusal
from pydantic import BaseModel

from payments_gateway.auth import Principal
from payments_gateway.body import read_json_object, validate
from payments_gateway.commands import command_id_for, keyed_command, query, send, send_or_processing
from payments_gateway.context import Authorized, Bucket, Caller
from payments_gateway.idempotency import idempotency_key
from payments_gateway.openapi_docs import json_body
from payments_gateway.routes.billing_common import customer_for_payment
from payments_gateway.routes.transaction_models import CaptureBody, PaymentBody, RefundBody, VoidBody
from payments_gateway.rpc import WorkerTimeout

PREFIX = "/api/v1/payments"
router = APIRouter(prefix=PREFIX, tags=["transactions"])


def _pending_transaction(transaction_id: str, principal: Principal, body: PaymentBody, provider: str) -> dict[str, Any]:
    now = utc_now_iso()
    return {
        "id": transaction_id,
        "object": "transaction",
        "workspace": principal.workspace,
        "status": "pending",
        "amount": body.amount,
        "currency": body.currency,
        "amount_authorized": 0,
        "amount_captured": 0,
        "amount_refunded": 0,
        "provider": provider,
        "provider_reference": None,
        "customer_id": body.customer_id,
        "description": body.description,
        "metadata": dict(body.metadata),
        "refunds": [],
        "failure_code": None,
        "failure_message": None,
        "next_action": None,
        "created_at": now,
        "updated_at": now,
        "dispute": None,  # the extension the transactions worker renders (views.py)
    }


async def _create_payment(request: Request, caller: Caller, command_type: str) -> Response:
    principal = caller.principal
    key = idempotency_key(request)
    body = validate(PaymentBody, await read_json_object(request))
    canonical = body.model_dump(mode="json")
    command_id = command_id_for(principal, key)
    transaction_id = ids.derived_id("txn", command_id)
    payload = {**canonical, "transaction_id": transaction_id}
    payload.update(await _payment_source(request, caller, body, replayable=key is not None))
    provider = str(payload["provider"])
    if (refusal := provider_amount_refusal(provider, body.currency, body.amount)) is not None:
        raise invalid(refusal, param="amount")  # a capture's or refund's amount: checked by the worker
    route = f"POST {PREFIX}/{command_type}"
    command = keyed_command(principal, command_type, route, canonical, key, payload, command_id=command_id)
    try:
        return await send(caller.context, request, TRANSACTIONS_QUEUE, command, transaction_id)
    except WorkerTimeout:
        if payload.get(CUSTOMER_MISSING):  # only an earlier request of the key may have made it: promise nothing
            raise in_progress() from None
        return JSONResponse(_pending_transaction(transaction_id, principal, body, provider), status_code=202)


async def _payment_source(request: Request, caller: Caller, body: PaymentBody, *, replayable: bool) -> dict[str, Any]:
    """Provider and payment method of a charge/authorize: as given, or the customer's (its provider and its
    default payment method) when `customer_id` names one of the workspace's customers. A customer deleted since
    is only 404 once the worker has found no earlier request with the same Idempotency-Key (`replayable`)."""
    provider = body.provider or caller.context.settings.payments_default_provider
    if body.customer_id is None:
        if body.payment_method is None:
            raise invalid(
                "payment_method is required (or a customer_id with a default payment method).", param="payment_method"
            )
        return {"provider": provider}
    try:
        customer = await customer_for_payment(caller.context, request, caller.principal, body.customer_id)
    except ApiError as error:
        if not replayable or error.status != 404:
            raise
        return {"provider": provider, CUSTOMER_MISSING: True}
    if body.provider is not None and body.provider != customer.provider:
        raise invalid(f"The customer belongs to the provider {customer.provider!r}.", param="provider")
    method = body.payment_method.model_dump() if isinstance(body.payment_method, BaseModel) else body.payment_method
    method = method or customer.default_payment_method
    if method is None:
        raise invalid("The customer has no default payment method: give a payment_method.", param="payment_method")
    return {"provider": customer.provider, "payment_method": method, "customer_reference": customer.provider_reference}


async def _change_payment(request: Request, caller: Caller, command_type: str, model: type[BaseModel]) -> Response:
    key = idempotency_key(request)
    body = validate(model, await read_json_object(request))
    canonical = body.model_dump(mode="json")
    payload = {name: value for name, value in canonical.items() if value is not None}
    route = f"POST {PREFIX}/{command_type}"
    command = keyed_command(caller.principal, command_type, route, canonical, key, payload)
    return await send_or_processing(caller.context, request, TRANSACTIONS_QUEUE, command, payload["transaction_id"])


async def _query(request: Request, caller: Caller, query_type: str, id_: str) -> Response:
    command = query(caller.principal, query_type, {"transaction_id": id_})
    return await send_or_processing(caller.context, request, TRANSACTIONS_QUEUE, command)


@router.post("/charge", status_code=201, openapi_extra=json_body(PaymentBody))
async def charge(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("payments:charge", Bucket.WRITE))],
) -> Response:
    """Authorize and capture in one step."""
    return await _create_payment(request, caller, "charge")


@router.post("/authorize", status_code=201, openapi_extra=json_body(PaymentBody))
async def authorize(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("payments:authorize", Bucket.WRITE))],
) -> Response:
    """Reserve the amount; capture or void it later."""
    return await _create_payment(request, caller, "authorize")


@router.post("/capture", openapi_extra=json_body(CaptureBody))
async def capture(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("payments:capture", Bucket.WRITE))],
) -> Response:
    """Capture all or part of an authorized transaction."""
    return await _change_payment(request, caller, "capture", CaptureBody)


@router.post("/refund", openapi_extra=json_body(RefundBody))
async def refund(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("payments:refund", Bucket.WRITE))],
) -> Response:
    """Refund all that remains refundable, or part of it."""
    return await _change_payment(request, caller, "refund", RefundBody)


@router.post("/void", openapi_extra=json_body(VoidBody))
async def void(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("payments:void", Bucket.WRITE))],
) -> Response:
    """Release an authorized transaction."""
    return await _change_payment(request, caller, "void", VoidBody)


@router.get("/transactions/{transaction_id}")
async def get_transaction(
    transaction_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("payments:read", Bucket.READ))],
) -> Response:
    return await _query(request, caller, "get_transaction", transaction_id)


@router.get("/transactions/{transaction_id}/events")
async def get_transaction_events(
    transaction_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("payments:admin", Bucket.READ))],
) -> Response:
    """The audit trail: the transaction's events as stored, in order."""
    return await _query(request, caller, "get_transaction_events", transaction_id)
