"""The subscription routes of API.md: create, get, update, cancel — each forwarded to the billing worker (the
same steps as the customer routes; see `customers`)."""

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
    CancelBody,
    SubscriptionBody,
    SubscriptionUpdateBody,
    check_subscription_terms,
    check_subscription_update,
)

router = APIRouter(prefix=PREFIX, tags=["subscriptions"])


@router.post("/subscriptions", status_code=201, openapi_extra=json_body(SubscriptionBody))
async def create_subscription(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("subscription:create", Bucket.WRITE))],
) -> Response:
    """Bills at once unless `trial_days` is given; billed on the customer's provider."""
    key = idempotency_key(request)
    body = validate(SubscriptionBody, await read_json_object(request))
    check_subscription_terms(body)
    canonical = body.model_dump(mode="json")
    command_id = command_id_for(caller.principal, key)
    payload = {**canonical, "subscription_id": ids.derived_id("sub", command_id)}
    route = f"POST {PREFIX}/subscriptions"
    command = keyed_command(
        caller.principal, "create_subscription", route, canonical, key, payload, command_id=command_id
    )
    return await forward(caller.context, request, command)


@router.get("/subscriptions/{subscription_id}")
async def get_subscription(
    subscription_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("subscription:read", Bucket.READ))],
) -> Response:
    return await forward(
        caller.context, request, query(caller.principal, "get_subscription", {"subscription_id": subscription_id})
    )


@router.put("/subscriptions/{subscription_id}", openapi_extra=json_body(SubscriptionUpdateBody))
async def update_subscription(
    subscription_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("subscription:update", Bucket.WRITE))],
) -> Response:
    """Changes quantity, price or amount, cancel_at_period_end, metadata (merged)."""
    key = idempotency_key(request)
    body = validate(SubscriptionUpdateBody, await read_json_object(request))
    sent = body.model_dump(mode="json", exclude_unset=True)
    check_subscription_update(sent)
    route = f"PUT {PREFIX}/subscriptions/{subscription_id}"
    payload = {**sent, "subscription_id": subscription_id}
    return await forward(
        caller.context, request, keyed_command(caller.principal, "update_subscription", route, sent, key, payload)
    )


@router.post("/subscriptions/{subscription_id}/cancel", openapi_extra=json_body(CancelBody, required=False))
async def cancel_subscription(
    subscription_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("subscription:cancel", Bucket.WRITE))],
) -> Response:
    """Immediately (`canceled`), or at the period's end (`cancel_at_period_end: true`, status unchanged)."""
    key = idempotency_key(request)
    body = validate(CancelBody, await read_optional_body(request))
    canonical = body.model_dump(mode="json")
    route = f"POST {PREFIX}/subscriptions/{subscription_id}/cancel"
    payload = {**canonical, "subscription_id": subscription_id}
    command = keyed_command(caller.principal, "cancel_subscription", route, canonical, key, payload)
    return await forward(caller.context, request, command)
