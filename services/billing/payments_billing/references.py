"""From a provider's id back to ours: `{kind}-reference-{provider}-{reference}` holds one `ProviderReferenceLinked`
(our id and workspace), appended when the object is created, so a webhook about `sub_…` or a customer profile
finds the subscription or customer it moves. An index stream, not a table: the store stays the only truth."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from payments_shared.eventstore.port import NO_STREAM, WrongExpectedVersion

from payments_billing.events import DomainEvent
from payments_billing.streams import Origin, Streams

logger = logging.getLogger(__name__)

LINKED = "ProviderReferenceLinked"


def reference_stream(kind: str, provider: str, reference: str) -> str:
    return f"{kind}-reference-{provider}-{reference}"


@dataclass(frozen=True)
class Linked:
    id: str
    workspace: str


async def link(streams: Streams, kind: str, provider: str, reference: str, linked: Linked, origin: Origin) -> None:
    """Record the link (a repeat by the same command is a no-op: its event id is derived from the command)."""
    event = DomainEvent(LINKED, {"id": linked.id, "workspace": linked.workspace, "provider": provider})
    try:
        await streams.append(reference_stream(kind, provider, reference), event, NO_STREAM, origin)
    except WrongExpectedVersion:
        existing = await resolve(streams, kind, provider, reference)
        if existing != linked:
            logger.error("provider reference already linked to another object", extra={"kind": kind})


async def resolve(streams: Streams, kind: str, provider: str, reference: str) -> Linked | None:
    events = await streams.read(reference_stream(kind, provider, reference))
    if not events:
        return None
    return Linked(str(events[0].data["id"]), str(events[0].data["workspace"]))
