"""What the domain modules decide and fold: an event type with its JSON data, before any store sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class DomainEvent:
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


class StoredEvent(Protocol):
    """Anything with a type and data: a `RecordedEvent` from the store or a `DomainEvent` just decided."""

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...
