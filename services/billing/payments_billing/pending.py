"""A change of a customer or subscription recorded as requested and not finished yet (pure; see `serialized`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar


@dataclass(frozen=True)
class PendingChange:
    """A change recorded as requested and not finished: what the provider is asked (`parameters`, fixed when it
    was requested) and what the command asked for (`requested`)."""

    command_id: str
    requested_at: str
    parameters: Mapping[str, Any]
    requested: Mapping[str, Any]

    def to_data(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "requested_at": self.requested_at,
            "parameters": dict(self.parameters),
            "requested": dict(self.requested),
        }

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> PendingChange:
        return cls(str(data["command_id"]), str(data["requested_at"]), data["parameters"], data["requested"])


class HoldsPending(Protocol):
    """A customer or a subscription (frozen dataclasses) with its open request, if any."""

    @property
    def pending_update(self) -> PendingChange | None: ...


H = TypeVar("H", bound=HoldsPending)


def without_finished(holder: H, outcome: Mapping[str, Any]) -> H:
    """`holder` without its open request when `outcome` (an outcome event's data) finishes it."""
    pending = holder.pending_update
    if pending is not None and outcome.get("command_id") == pending.command_id:
        replaced: H = dataclasses.replace(holder, pending_update=None)  # type: ignore[type-var]
        return replaced
    return holder
