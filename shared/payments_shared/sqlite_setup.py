"""Setting up an SQLite file that several processes open at once (the workers of one DATA_DIR start together):
WAL mode and the schema, retried while another process holds the file.

A new file's switch to WAL takes an exclusive lock, and SQLite answers "database is locked" at once, without its
busy timeout, to a connection whose wait could deadlock with another's (both hold a shared lock and want more).
Workers started side by side on a fresh data directory then failed to start (1 round in 13 of four processes;
1 in 3 once the ledger's schema grew). Every step is idempotent (`IF NOT EXISTS`), so trying again is safe."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from typing import Final

LOCKED_FOR_AT_MOST_S: Final = 30.0


def set_up(connection: sqlite3.Connection, create: Callable[[sqlite3.Connection], object]) -> None:
    """`PRAGMA journal_mode=WAL`, then `create(connection)` (the schema), retried while the file is locked."""
    deadline = time.monotonic() + LOCKED_FOR_AT_MOST_S
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            create(connection)
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))
