"""`apply_provider_event`: a verified webhook event (sent by webhook-ingest) applied to the customer or
subscription it is about, found through its provider reference. Applied at most once per event (the command id
is derived from the webhook event and the stream remembers the commands it holds) and in the provider's order;
an event about an object this system does not know changes nothing."""

from __future__ import annotations

import logging
from dataclasses import replace

from payments_shared import faults
from payments_shared.messages import Reply
from payments_shared.webhook_applied import mark_applied

from payments_billing import customer as customers
from payments_billing import subscription as subscriptions
from payments_billing.context import BillingContext, Call
from payments_billing.provider_events import CUSTOMER, Report, interpret
from payments_billing.provider_refetch import refetched, refetched_customer
from payments_billing.references import Linked, resolve

logger = logging.getLogger(__name__)

# Fault point: the event is recorded by webhook-ingest and handed to this worker, nothing of it applied yet.
BEFORE_PROVIDER_EVENT_APPLIED = "before_billing_provider_event_applied"


def outcome(applied: bool, reason: str | None = None) -> Reply:
    body: dict[str, object] = {"applied": applied}
    if reason:
        body["reason"] = reason
    return Reply(status=200, body=body)


async def apply_provider_event(context: BillingContext, call: Call) -> Reply:
    faults.reached(BEFORE_PROVIDER_EVENT_APPLIED)
    reply = await _apply(context, call)
    await mark_applied(context.streams.store, call.payload, reply.body)
    return reply


async def _apply(context: BillingContext, call: Call) -> Reply:
    report = interpret(call.payload)
    if report is None:
        return outcome(False, "not an event billing follows")
    linked = await resolve(context.streams, report.kind, report.provider, report.reference)
    if linked is None:
        logger.info("provider event about an unknown object ignored", extra={"kind": report.kind})
        return outcome(False, "unknown object")
    # The event's workspace is the object's: webhook-ingest cannot know it.
    command = call.origin.command.model_copy(update={"workspace": linked.workspace})
    scoped = Call(replace(call.origin, command=command), call.now)
    if report.kind == CUSTOMER:
        return await _apply_to_customer(context, scoped, linked, report)
    return await _apply_to_subscription(context, scoped, linked, report)


async def _apply_to_customer(context: BillingContext, call: Call, linked: Linked, report: Report) -> Reply:
    stream = customers.stream_name(linked.id)
    loaded = await context.streams.load(stream, customers.fold)
    if loaded.applied(call.command_id):
        return outcome(True)
    if report.deleted:
        event = customers.decide_reported_deletion(loaded.state, call.workspace, call.now)
    else:
        event_type = str(call.payload.get("event_type"))
        report = await refetched_customer(context, report, event_type, loaded.state)
        provider_created = str(call.payload.get("provider_created") or call.now)
        event = customers.decide_reported_update(
            loaded.state, call.workspace, report.changes, provider_created, call.now, held_now=report.held_now
        )
    if event is None:
        return outcome(False, "nothing to change")
    await context.streams.append(stream, event, loaded.version, call.origin)
    return outcome(True)


async def _apply_to_subscription(context: BillingContext, call: Call, linked: Linked, report: Report) -> Reply:
    stream = subscriptions.stream_name(linked.id)
    loaded = await context.streams.load(stream, subscriptions.fold)
    if loaded.applied(call.command_id):
        return outcome(True)
    current = await refetched(context, report, str(call.payload.get("event_type")), str(call.payload.get("event_id")))
    if current is None:
        return outcome(False, "the subscription could not be read from its provider")
    report = current
    provider_created = str(call.payload.get("provider_created") or call.now)
    event = subscriptions.decide_reported(loaded.state, call.workspace, report.changes, provider_created, call.now)
    if event is None:
        return outcome(False, "nothing to change")
    await context.streams.append(stream, event, loaded.version, call.origin)
    return outcome(True)
