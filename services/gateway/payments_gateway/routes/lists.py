"""The list routes: transactions, customers, subscriptions — Stripe-style pages from the owning worker's
projection (`{"object": "list", "data", "has_more", "url", "projection_position"}`).

The gateway keeps no state: it refuses card data and bytes that are not UTF-8 in the query string (as on every
route, payments_gateway.query_string), and forwards the parameters as a `list_*` query to the worker that owns
the objects, which answers from its read model (payments_shared.projections) and checks them there (400 naming
the parameter). Lists are newest first (`created_at`, then `id`, descending), paged with Stripe's
`starting_after` / `ending_before` cursors and filtered on `created` as Stripe spells it, scoped to the
token's workspace, and may lag a write by a moment: `projection_position` is the event-store position the page
reflects (a write is listed once its events' positions are at or below it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from payments_shared.errors import echoed, invalid
from payments_shared.messages import BILLING_QUEUE, TRANSACTIONS_QUEUE

from payments_gateway.commands import query, send
from payments_gateway.context import Authorized, Bucket, Caller
from payments_gateway.query_string import query_parameters
from payments_gateway.rpc import WorkerTimeout, unavailable

PREFIX = "/api/v1/payments"
router = APIRouter(prefix=PREFIX, tags=["lists"])


def _parameter(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = schema or {"type": "string"}
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


PAGING = [
    _parameter("limit", "Objects per page, 1 to 100 (default 10).", {"type": "integer", "minimum": 1, "maximum": 100}),
    _parameter(
        "starting_after",
        "A cursor: an id of this list. The page holds the objects listed just after it (older ones); with the "
        "last id of a page, the next page. Not together with ending_before.",
    ),
    _parameter(
        "ending_before",
        "A cursor: an id of this list. The page holds the objects listed just before it (newer ones), still "
        "newest first, and has_more tells whether still newer ones exist; with the first id of a page, the "
        "previous page. Not together with starting_after.",
    ),
]
_UNIX_SECONDS = {"type": "integer"}
CREATED = [
    _parameter("created", "Created during this second (Unix seconds).", _UNIX_SECONDS),
    _parameter("created[gt]", "Created after this second (Unix seconds).", _UNIX_SECONDS),
    _parameter("created[gte]", "Created during or after this second (Unix seconds).", _UNIX_SECONDS),
    _parameter("created[lt]", "Created before this second (Unix seconds).", _UNIX_SECONDS),
    _parameter("created[lte]", "Created during or before this second (Unix seconds).", _UNIX_SECONDS),
    _parameter("created_gte", "Created at or after this time (Unix seconds or ISO 8601)."),
    _parameter("created_lt", "Created before this time (Unix seconds or ISO 8601)."),
]


def _documented(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": [*parameters, *PAGING]}


async def _list(request: Request, caller: Caller, queue: str, kind: str) -> Response:
    params: dict[str, str] = {}
    for key, value in query_parameters(request):
        if key in params:
            raise invalid(f"{echoed(key)} is given more than once.", param=echoed(key))
        params[key] = value
    try:
        command = query(caller.principal, f"list_{kind}", {"params": params})
        return await send(caller.context, request, queue, command)
    except WorkerTimeout:
        raise unavailable("The list is not available right now; retry later.") from None


@router.get(
    "/transactions",
    openapi_extra=_documented(
        _parameter("customer_id", "Only this customer's transactions."),
        _parameter("status", "Only transactions in this status."),
        *CREATED,
    ),
)
async def list_transactions(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("payments:read", Bucket.READ, takes_query=True))],
) -> Response:
    return await _list(request, caller, TRANSACTIONS_QUEUE, "transactions")


@router.get("/customers", openapi_extra=_documented(_parameter("email", "Only customers with this email."), *CREATED))
async def list_customers(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("customer:read", Bucket.READ, takes_query=True))],
) -> Response:
    return await _list(request, caller, BILLING_QUEUE, "customers")


@router.get(
    "/subscriptions",
    openapi_extra=_documented(
        _parameter("customer_id", "Only this customer's subscriptions."),
        _parameter(
            "status", "Only subscriptions in this status, or `ended` (canceled) or `all`; without it, all but canceled."
        ),
        *CREATED,
    ),
)
async def list_subscriptions(
    request: Request,
    caller: Annotated[Caller, Depends(Authorized("subscription:read", Bucket.READ, takes_query=True))],
) -> Response:
    return await _list(request, caller, BILLING_QUEUE, "subscriptions")
