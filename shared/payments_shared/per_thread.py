"""One resource per thread (a SQLite connection, say), made on first use in that thread, all closed together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

R = TypeVar("R")


class PerThread(Generic[R]):
    def __init__(self, make: Callable[[], R], close: Callable[[R], None]) -> None:
        self._make = make
        self._close = close
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[R] = []

    def get(self) -> R:
        """This thread's resource, made now if it has none."""
        resource: R | None = getattr(self._local, "resource", None)
        if resource is None:
            resource = self._local.resource = self._make()
            with self._lock:
                self._made.append(resource)
        return resource

    def drop(self) -> None:
        """Close this thread's resource (after an error): the next `get` makes a fresh one."""
        resource: R | None = getattr(self._local, "resource", None)
        self._local.resource = None
        if resource is None:
            return
        with self._lock:
            if resource in self._made:
                self._made.remove(resource)
        self._close(resource)

    def close_all(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for resource in made:
            self._close(resource)
