"""The billing worker: consumes `BILLING_QUEUE`, runs each command once and replies `Reply(...).to_body()`.

Every change (create/update/delete/cancel) goes through the shared idempotency guard on `idempotency-{command_id}`:
a repeat gets the recorded reply byte for byte, a different body under the same key 422, one still running 409.
A reply of 503 is not kept (the key is released so a retry runs again), nor a 409 of a command that lost a race
to a concurrent change; but a retry within the hour of an unresolved re-drive's 503 gets it again, Stripe not
asked. A version conflict on the object's stream (a concurrent change) reloads and decides again; updates and
cancels are serialised before their provider call (`serialized`). An unexpected exception propagates, so the broker
redelivers the message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from payments_shared import faults
from payments_shared.broker.port import Message
from payments_shared.errors import REDRIVE_UNRESOLVED, ApiError, invalid
from payments_shared.eventstore.port import WrongExpectedVersion
from payments_shared.idempotency import Claimed, Hold, IdempotencyGuard, Replay
from payments_shared.logging import correlation_id
from payments_shared.messages import BILLING_QUEUE, Command, Reply, event_metadata
from payments_shared.metrics import record_recovery_failure
from payments_shared.providers.registry import breaker_states
from payments_shared.tasks import PeriodicSweep
from pydantic import ValidationError

from payments_billing import customer_commands, provider_event_commands, subscription_commands
from payments_billing.context import BillingContext, Call
from payments_billing.journal import Journal
from payments_billing.streams import Origin

logger = logging.getLogger(__name__)

Handler = Callable[[BillingContext, Call], Awaitable[Reply]]
MAX_CONFLICT_RETRIES = 10
TRANSIENT_CONFLICTS = frozenset({"concurrent_change", "operation_in_progress"})
BEFORE_RECORD = "billing.before_record"  # fault point: the command's events are appended, its reply not kept
AFTER_ACCEPTED = "billing.after_accepted"  # fault point: the command is journaled, nothing of it done yet
# A retry within the Retry-After of these 503s is answered from the key (an unresolved re-drive: an operator decides,
# Stripe answers the same until then); after any other 503 (a short outage) a retry asks the provider at once.
HELD_REASONS = frozenset({REDRIVE_UNRESOLVED})

CHANGES: Mapping[str, tuple[Handler, str]] = {
    "create_customer": (customer_commands.create_customer, "customer_id"),
    "update_customer": (customer_commands.update_customer, "customer_id"),
    "delete_customer": (customer_commands.delete_customer, "customer_id"),
    "create_subscription": (subscription_commands.create_subscription, "subscription_id"),
    "update_subscription": (subscription_commands.update_subscription, "subscription_id"),
    "cancel_subscription": (subscription_commands.cancel_subscription, "subscription_id"),
}
QUERIES: Mapping[str, Handler] = {
    "get_customer": customer_commands.get_customer,
    "get_subscription": subscription_commands.get_subscription,
    # Sent by webhook-ingest, not requested: applied at most once by the object's stream itself (no key).
    "apply_provider_event": provider_event_commands.apply_provider_event,
}


def error_reply(error: ApiError) -> Reply:
    return Reply(status=error.status, body=error.body(), headers=error.headers())


async def run(handler: Handler, context: BillingContext, origin: Origin, accepted_at: str | None = None) -> Reply:
    """The handler's reply, an ApiError as its reply; a version conflict decides again on the new state."""
    for _ in range(MAX_CONFLICT_RETRIES):
        try:
            return await handler(context, Call.of(origin, accepted_at))
        except ApiError as error:
            return error_reply(error)
        except WrongExpectedVersion:
            logger.info("version conflict on %s: deciding again", origin.command.type)
    return error_reply(ApiError("conflict", "The object is changing too fast; retry.", code="concurrent_change"))


def _retry_after_s(reply: Reply) -> float | None:
    """The reply's Retry-After in seconds (our replies give it as a number), None when it has none."""
    value = reply.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _transient_conflict(reply: Reply) -> bool:
    """A 409 of a command that lost a race (nothing of it recorded, or its outcome not yet): not the key's answer,
    so a retry with the key runs it again."""
    return reply.status == 409 and reply.body.get("error", {}).get("code") in TRANSIENT_CONFLICTS


class BillingWorker:
    def __init__(
        self, context: BillingContext, guard: IdempotencyGuard, recovery_min_age_s: float, recovery_interval_s: float
    ) -> None:
        self._context = context
        self._guard = guard
        self._journal = Journal(context.streams.store, guard)
        self._sweep_min_age_s = recovery_min_age_s
        self._sweep_interval_s = recovery_interval_s
        self._sweeper = PeriodicSweep("billing-recovery-sweep", recovery_interval_s, self.sweep)

    def breakers(self) -> dict[str, dict[str, Any]]:
        """Each provider's circuit breaker in this worker: state, failures counted, seconds until it half-opens."""
        return breaker_states(self._context.providers)

    async def recover(self, min_age_s: float) -> int:
        """At start-up: run again every accepted change left without a reply (see `journal`), as redeliveries of
        their first message (the run that took them died); returns how many ran. As in `sweep`, a command whose
        Accept.js nonce was not journaled is left to its client: sent without it, the provider refuses it and that
        refusal would be kept under the key, replayed to the client's retry that carries the nonce."""
        open_commands = [command for command in await self._journal.open_commands(min_age_s) if command.complete]
        recovered = 0
        for command in open_commands:
            recovered += await self._run_again(
                Message(body=command.body, message_id=command.message_id, redelivered=True)
            )
        if open_commands:
            logger.info("billing commands recovered", extra={"recovered": recovered, "open": len(open_commands)})
        return recovered

    async def sweep(self) -> int:
        """While running: run again the changes left without a reply for RECOVERY_MIN_AGE_S (a 503 whose provider
        call may have succeeded releases its key), and past the Retry-After of their last 503 (an unresolved Stripe
        re-drive's hour: asking sooner only repeats its look-ups), as new deliveries, so the idempotency guard takes
        over only a released key or one idle past the in-flight window, never one a live attempt holds. A command
        whose nonce was not kept is left to its client. Returns how many ran again."""
        due = [command for command in await self._journal.open_commands(self._sweep_min_age_s) if command.complete]
        swept = 0
        for command in due:
            swept += await self._run_again(Message(body=command.body))
        if due:
            logger.info("billing commands swept", extra={"swept": swept, "open": len(due)})
        return swept

    async def _run_again(self, message: Message) -> bool:
        """Whether the open command in `message` ran; one that raises (a bug, a store failure) is logged and
        counted, and left open for the next sweep: the commands after it still run. Not held to its last 503's
        Retry-After: the sweep ran it because that has passed, start-up recovery runs every open command."""
        try:
            await self.handle(message, recovering=True)
        except Exception:
            body = message.body
            logger.exception(
                "billing command could not be run again; left for the next sweep",
                extra={"command_id": body.get("command_id"), "command": body.get("type")},
            )
            record_recovery_failure(BILLING_QUEUE)
            return False
        return True

    def start_sweeping(self) -> None:
        """Run `sweep()` every RECOVERY_INTERVAL_S in the background (until `stop`)."""
        if self._sweep_interval_s > 0:
            self._journal.start_following()
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
        await self._journal.stop_following()

    async def handle(self, message: Message, recovering: bool = False) -> Mapping[str, Any]:
        """The reply to a delivered command. A retry of a change whose last attempt was left unresolved gets that 503
        again, with what is left of its Retry-After, until it has passed; unless `recovering` (see `_run_again`)."""
        try:
            command = Command.model_validate(message.body)
        except ValidationError:
            logger.error("malformed billing command %s", message.message_id)
            return error_reply(invalid("Malformed command.")).to_body()
        token = correlation_id.set(message.correlation_id or command.command_id)
        try:
            return (await self._dispatch(command, message, recovering)).to_body()
        finally:
            correlation_id.reset(token)

    async def _dispatch(self, command: Command, message: Message, recovering: bool) -> Reply:
        origin = Origin(
            command,
            correlation_id=message.correlation_id or command.command_id,
            causation_id=message.message_id,
            traceparent=message.headers.get("traceparent"),
        )
        if command.type in QUERIES:
            return await run(QUERIES[command.type], self._context, origin)
        if command.type not in CHANGES:
            return error_reply(invalid(f"Unknown billing command {command.type!r}."))
        handler, target_field = CHANGES[command.type]
        metadata = event_metadata(command, origin.correlation_id, origin.causation_id, origin.traceparent)
        try:
            claim = await self._guard.begin(
                command.command_id,
                fingerprint=command.fingerprint,
                route=command.type,
                target=str(command.payload.get(target_field) or "") or None,
                message_id=message.message_id,
                redelivered=message.redelivered,
                metadata=metadata,
                hold=None if recovering else Hold(_utc_now(), HELD_REASONS),
            )
        except ApiError as error:
            return error_reply(error)
        if isinstance(claim, Replay):
            return Reply.model_validate(claim.response)
        accepted_at = await self._journal.accept(command, message.message_id, metadata, taking_over=claim.took_over)
        faults.reached(AFTER_ACCEPTED)
        return await self._finish(claim, await run(handler, self._context, origin, accepted_at), metadata)

    async def _finish(self, claim: Claimed, reply: Reply, metadata: Mapping[str, Any]) -> Reply:
        faults.reached(BEFORE_RECORD)
        if reply.status == 503 or _transient_conflict(reply):
            reason = str(reply.body.get("error", {}).get("code"))
            message = reply.body.get("error", {}).get("message")
            await self._guard.release(claim, reason, metadata, _retry_after_s(reply), message)
            return reply
        return Reply.model_validate(await self._guard.record(claim, reply.to_body(), metadata))
