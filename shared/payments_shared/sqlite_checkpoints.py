"""WAL checkpoints off the event loop: a SQLite file written by a loop's thread has its WAL copied into the
database file (which fsyncs it) by a background thread, never by the commit that happens to cross SQLite's
auto-checkpoint threshold — that commit would stall the loop for the whole copy. Used by the event store and
the sandbox ledger; their write connections keep only a high backstop threshold (`BACKSTOP_PAGES`)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY_S: Final = 0.25
BACKSTOP_PAGES: Final = 50_000


class Checkpointer:
    """Copies the WAL into the database file in the background (PASSIVE: never blocks the writer or readers)."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self.wanted = threading.Event()  # set after commits
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sqlite-checkpointer:{path}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wanted.set()
        self._thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        while not self._stopping.wait(CHECKPOINT_EVERY_S):
            if not self.wanted.wait(1.0) or self._stopping.is_set():
                continue
            self.wanted.clear()
            try:
                connection = connection or sqlite3.connect(self._path, timeout=self._busy_timeout_ms / 1000)
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as error:
                logger.debug("checkpoint of %s skipped: %s", self._path, error)
                if connection is not None:
                    connection.close()
                    connection = None
        if connection is not None:
            connection.close()
