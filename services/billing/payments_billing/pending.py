"""A change of a customer or subscription recorded as requested and not finished yet (pure; see `serialized`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
