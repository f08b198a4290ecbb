"""Test-only fault injection at named points of a worker (between an append and a provider call…). Off unless
configured:

- `PAYMENTS_FAULT_CRASH_ONCE=<point>:<marker-file>[,<point>:<marker-file>…]`: the first time the process reaches
  `<point>` while `<marker-file>` does not exist, the file is created and the process SIGKILLs itself (a real
  crash: no cleanup, no ack). The marker makes it happen once across restarts.
- `hook(point, callback)`: an in-process callback for unit tests (e.g. raise to simulate a crash).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

CRASH_ONCE_ENV = "PAYMENTS_FAULT_CRASH_ONCE"

_hooks: dict[str, list[Callable[[], None]]] = {}


def reached(point: str) -> None:
    """Called by production code at a named point; does nothing unless a test configured a fault there."""
    for callback in list(_hooks.get(point, ())):
        callback()
    spec = os.environ.get(CRASH_ONCE_ENV)
    if spec:
        _crash_once(spec, point)


@contextmanager
def hook(point: str, callback: Callable[[], None]) -> Iterator[None]:
    _hooks.setdefault(point, []).append(callback)
    try:
        yield
    finally:
        _hooks[point].remove(callback)


def _crash_once(spec: str, point: str) -> None:
    for item in spec.split(","):
        name, _, marker = item.strip().partition(":")
        if name != point or not marker:
            continue
        try:
            descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.close(descriptor)
        logger.warning("fault injection: crashing at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)
