"""What the customer and subscription routes share (forwarding to the billing worker, optional bodies), and the
customer lookup the charge/authorize routes use for `customer_id` (`customer_for_payment`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from payments_shared.errors import ApiError, not_found
from payments_shared.messages import BILLING_QUEUE, Command

from payments_gateway.auth import Principal
from payments_gateway.body import read_json_object
from payments_gateway.commands import query, send_or_processing
from payments_gateway.context import GatewayContext

PREFIX = "/api/v1/payments"


async def forward(context: GatewayContext, request: Request, command: Command) -> Response:
    """The billing worker's reply unchanged, or 503 `processing` past RPC_TIMEOUT_S."""
    return await send_or_processing(context, request, BILLING_QUEUE, command)


async def read_optional_body(request: Request) -> dict[str, Any]:
    """The JSON object sent (through the card-data guard), or {} for an empty body."""
    if not await request.body():
        return {}
    return await read_json_object(request)


@dataclass(frozen=True)
class PaymentCustomer:
    """What a charge/authorize with `customer_id` needs from the billing worker's `get_customer`."""

    id: str
    provider: str
    provider_reference: str | None
    default_payment_method: str | None


async def customer_for_payment(
    context: GatewayContext, request: Request, principal: Principal, customer_id: str
) -> PaymentCustomer:
    """The workspace's customer `customer_id` (404 naming `customer_id` when unknown, deleted or another
    workspace's). For the charge/authorize routes: no `customer:read` permission is needed, the route's own
    permission covers using the customer."""
    response = await forward(context, request, query(principal, "get_customer", {"customer_id": customer_id}))
    body = json.loads(bytes(response.body))
    if response.status_code == 404:
        raise not_found("customer", param="customer_id")
    if response.status_code != 200:
        error = body.get("error", {})
        raise ApiError(
            str(error.get("type", "provider_error")),
            str(error.get("message", "The customer could not be read.")),
            code=error.get("code"),
            status=response.status_code,
        )
    return PaymentCustomer(
        id=str(body["id"]),
        provider=str(body["provider"]),
        provider_reference=body.get("provider_reference"),
        default_payment_method=body.get("default_payment_method"),
    )
