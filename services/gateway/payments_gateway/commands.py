"""Turning an authorised, validated request into a worker `Command` (ids and fingerprint as ARCHITECTURE.md
says: the command id derived from workspace + Idempotency-Key, the fingerprint over route + canonical body)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from payments_shared import ids
from payments_shared.logging import correlation_id
from payments_shared.messages import Command

from payments_gateway.auth import Principal
from payments_gateway.context import GatewayContext
from payments_gateway.rpc import (
    NotConfirmed,
    WorkerTimeout,
    not_confirmed,
    still_processing,
    unavailable,
    valid_traceparent,
)


def command_id_for(principal: Principal, idempotency_key: str | None) -> str:
    return ids.command_id(principal.workspace, idempotency_key)


def keyed_command(
    principal: Principal,
    command_type: str,
    route: str,
    canonical_body: dict[str, Any],
    idempotency_key: str | None,
    payload: dict[str, Any],
    command_id: str | None = None,
) -> Command:
    """A command from a POST; `command_id` when the route needed it first (to derive the created object's id)."""
    return Command(
        type=command_type,
        workspace=principal.workspace,
        actor=principal.actor,
        command_id=command_id or command_id_for(principal, idempotency_key),
        idempotency_key=idempotency_key,
        fingerprint=ids.fingerprint(route, canonical_body),
        payload=payload,
    )


def query(principal: Principal, query_type: str, payload: dict[str, Any]) -> Command:
    return Command(
        type=query_type,
        workspace=principal.workspace,
        actor=principal.actor,
        command_id=ids.command_id(principal.workspace, None),
        payload=payload,
    )


def is_read(command: Command) -> bool:
    """A query (`query` above): nothing keyed, nothing recorded, worth nothing once its client stops waiting."""
    return command.fingerprint is None


async def send(
    context: GatewayContext, request: Request, queue: str, command: Command, transaction_id: str | None = None
) -> JSONResponse:
    """Request/reply to the worker; raises WorkerTimeout or a 503 ApiError (naming `transaction_id`, the one the
    command makes or changes, when it may have been carried out without a reply)."""
    request_id = correlation_id.get() or command.command_id
    traceparent = valid_traceparent(request.headers.get("traceparent"))
    try:
        return await context.worker.call(queue, command, request_id, traceparent, read=is_read(command))
    except NotConfirmed:
        if is_read(command):
            raise unavailable("The service is temporarily unavailable; retry the read.") from None
        raise not_confirmed(command.idempotency_key is not None, transaction_id, subject_of(command)) from None


async def send_or_processing(
    context: GatewayContext, request: Request, queue: str, command: Command, transaction_id: str | None = None
) -> JSONResponse:
    """`send`, but past RPC_TIMEOUT_S a 503 `processing`: the command still completes, and the same
    Idempotency-Key later gets its result. A read (no fingerprint: nothing keyed) is simply to be retried."""
    try:
        return await send(context, request, queue, command, transaction_id)
    except WorkerTimeout:
        if is_read(command):
            raise unavailable("The service did not answer in time; retry the read.") from None
        raise still_processing(command.idempotency_key is not None, subject_of(command)) from None


def subject_of(command: Command) -> str | None:
    """The id of the object a command makes or changes, to name to a client that must look before it resends."""
    for name in ("transaction_id", "subscription_id", "customer_id"):  # a subscription's customer comes after it
        if isinstance(command.payload.get(name), str):
            return str(command.payload[name])
    return None
