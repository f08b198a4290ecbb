"""One delivery of a command: the command itself plus what the broker says about the delivery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payments_shared.broker.port import Message
from payments_shared.messages import Command, event_metadata


@dataclass(frozen=True)
class Delivery:
    command: Command
    message_id: str
    correlation_id: str
    redelivered: bool
    traceparent: str | None = None

    @classmethod
    def of(cls, message: Message, command: Command) -> Delivery:
        return cls(
            command=command,
            message_id=message.message_id,
            correlation_id=message.correlation_id or command.command_id,
            redelivered=message.redelivered,
            traceparent=message.headers.get("traceparent"),
        )

    @property
    def payload(self) -> dict[str, Any]:
        return self.command.payload

    def metadata(self) -> dict[str, Any]:
        """Metadata for an event this delivery causes (a fresh `occurred_at` each call)."""
        return event_metadata(self.command, self.correlation_id, self.message_id, self.traceparent)
