"""Walking parsed JSON (objects, arrays, scalars) for the first key or value that matches a test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def first_match(value: Any, holds: Callable[[object], bool]) -> tuple[tuple[str, ...], bool] | None:
    """Where `holds` is first true in a parsed body: the path to the value, or to the key (then True: the path
    ends with that key). Keys are checked before their values are walked, so a path never passes through a key
    that holds. Walks with its own stack, not by recursion: a body may nest as deep as the parser allowed."""
    pending: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, dict):
            key = next((key for key in item if holds(key)), None)
            if key is not None:
                return (*path, key), True
            children: Any = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        elif holds(item):
            return path, False
        else:
            continue
        for key, child in children:
            if isinstance(child, dict | list):
                pending.append((child, (*path, str(key))))
            elif holds(child):
                return (*path, str(key)), False
    return None
