"""One projecting process per projection and read-model file.

Workers sharing a DATA_DIR (two replicas on one volume) would each run every projection against the same file:
both correct, but each commit moves the checkpoint under the other, which then starts again from it, over and
over. An exclusive `flock` on a file beside the read model makes one of them the projector; the others answer
their lists from the same file and try again every RETRY_S, so one takes over when the projector stops or dies
(the kernel releases the lock of a dead process). Local files only, as for SQLite itself.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

RETRY_S: Final = 1.0


def lock_path(read_model_path: Path, projection_name: str) -> Path:
    return read_model_path.with_name(f"{read_model_path.name}.{projection_name}.lock")


class ProjectorLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def acquire(self, retry_s: float = RETRY_S) -> None:
        """Returns once this process holds the lock (at once when no other process does)."""
        if self.try_acquire():
            return
        where = {"lock": str(self.path)}
        logger.info("another process projects into this read model: waiting to take over", extra=where)
        while not self.try_acquire():  # noqa: ASYNC110 - the lock is another process's: nothing here can signal it
            await asyncio.sleep(retry_s)
        logger.info("took over projecting into this read model", extra=where)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None
