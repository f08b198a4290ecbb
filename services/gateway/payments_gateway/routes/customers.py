"""The customer routes of API.md: create, get, update (merge), delete — each forwarded to the billing worker.

Writes: authorise (permission, write budget) → Idempotency-Key → body (size limit, JSON, card-data guard, strict
validation) → command → the worker's reply unchanged. A worker that does not answer within RPC_TIMEOUT_S is 503
`processing` (the command still completes; the same Idempotency-Key later gets its result).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from payments_shared import ids

from payments_gateway.body import read_json_object, validate
from payments_gateway.commands import command_id_for, keyed_command, query
from payments_gateway.context import Authorized, Bucket, Caller
from payments_gateway.idempotency import idempotency_key
from payments_gateway.openapi_docs import json_body
from payments_gateway.routes.billing_common import PREFIX, forward, read_optional_body
from payments_gateway.routes.billing_models import (
    CustomerBody,
    CustomerUpdateBody,
    EmptyBody,
    check_customer_update,
)

router = APIRouter(prefix=PREFIX, tags=["customers"])


@router.post("/customers", status_code=201, openapi_extra=json_body(CustomerBody))
async def create_customer(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("customer:create", Bucket.WRITE))],
) -> Response:
    key = idempotency_key(request)
    body = validate(CustomerBody, await read_json_object(request))
    canonical = body.model_dump(mode="json")
    command_id = command_id_for(caller.principal, key)
    payload = {
        **canonical,
        "customer_id": ids.derived_id("cus", command_id),
        "provider": body.provider or caller.context.settings.payments_default_provider,
    }
    route = f"POST {PREFIX}/customers"
    command = keyed_command(caller.principal, "create_customer", route, canonical, key, payload, command_id=command_id)
    return await forward(caller.context, request, command)


@router.get("/customers/{customer_id}")
async def get_customer(
    customer_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("customer:read", Bucket.READ))],
) -> Response:
    return await forward(caller.context, request, query(caller.principal, "get_customer", {"customer_id": customer_id}))


@router.put("/customers/{customer_id}", openapi_extra=json_body(CustomerUpdateBody))
async def update_customer(
    customer_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("customer:update", Bucket.WRITE))],
) -> Response:
    key = idempotency_key(request)
    sent = validate(CustomerUpdateBody, await read_json_object(request)).model_dump(mode="json", exclude_unset=True)
    check_customer_update(sent)
    route = f"PUT {PREFIX}/customers/{customer_id}"
    payload = {**sent, "customer_id": customer_id}
    return await forward(
        caller.context, request, keyed_command(caller.principal, "update_customer", route, sent, key, payload)
    )


@router.delete("/customers/{customer_id}")
async def delete_customer(
    customer_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("customer:delete", Bucket.WRITE))],
) -> Response:
    key = idempotency_key(request)
    validate(EmptyBody, await read_optional_body(request))
    route = f"DELETE {PREFIX}/customers/{customer_id}"
    command = keyed_command(caller.principal, "delete_customer", route, {}, key, {"customer_id": customer_id})
    return await forward(caller.context, request, command)
