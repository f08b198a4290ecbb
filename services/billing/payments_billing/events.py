"""What the domain modules decide and fold: an event type with its JSON data, before any store sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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


def known_changes(state: Any, changes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The recorded changes that name a field of `state` (a dataclass). A field that a newer version records is
    left out, so a process of this version (say, during a rolling deploy) still folds the object instead of
    failing on it."""
    names = {known.name for known in fields(state)}
    return {name: value for name, value in (changes or {}).items() if name in names}
