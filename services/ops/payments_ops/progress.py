"""A one-line progress display on stderr, only when stderr is a terminal (so pipes and logs stay clean)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_EVERY_S = 0.2


class ProgressLine:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._started = time.monotonic()
        self._last_drawn = 0.0
        self._drawn = False

    def update(self, count: int, position: int | None = None, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_drawn < REDRAW_EVERY_S:
            return
        self._last_drawn = now
        rate = count / max(now - self._started, 1e-6)
        where = f" · position {position:,}" if position is not None else ""
        self._stream.write(f"\r{self._label}: {count:,} events{where} · {rate:,.0f}/s\x1b[K")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
