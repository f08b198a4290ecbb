"""Rate limits (moving window), storage from `RATE_LIMIT_STORAGE`: memory:// in this process, redis:// through
`limits` (its async Redis storage, on `coredis`).

One `RateLimiter` per process; `check(limit, *key)` raises API.md's 429 `rate_limit_error` with `Retry-After`
when the key's budget is spent. The gateway keys by workspace and bucket (read/write); webhook-ingest keys by
source address.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Protocol

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from payments_shared.errors import ApiError

logger = logging.getLogger(__name__)

MEMORY_STORAGE: Final = "memory://"
# A shared storage slower than this, or unreachable, lets the request through (see _LimitsWindows).
STORAGE_TIMEOUT_S: Final = 0.5
# After the storage failed to answer, it is not asked again for this long: every request of a Redis brownout would
# otherwise wait STORAGE_TIMEOUT_S first (a probe: 60 concurrent charges from 0.03 to 0.5-0.6 s each).
STORAGE_BACKOFF_S: Final = 5.0
STORAGE_WARN_EVERY_S: Final = 60.0
# How often memory:// forgets keys with no hit left in their window (webhook-ingest keys by source address).
SWEEP_EVERY_S: Final = 60.0


class _Windows(Protocol):
    async def hit(self, limit: RateLimitItem, key: tuple[str, ...]) -> bool: ...

    async def reset_time(self, limit: RateLimitItem, key: tuple[str, ...]) -> float:
        """When the window of `key`, just refused a hit, has room again."""
        ...


class _LimitsWindows:
    """A shared storage (redis://) through `limits`' moving window. While the storage cannot answer (down,
    unreachable, slower than STORAGE_TIMEOUT_S) every hit is allowed, with a warning at most once a minute: the
    limits protect the service, and must not stop payments while Redis is away. Once it failed, it is left alone
    for STORAGE_BACKOFF_S (hits allowed at once), then asked again."""

    def __init__(self, storage_uri: str) -> None:
        uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
        self._limiter = MovingWindowRateLimiter(storage_from_string(uri, wrap_exceptions=True))
        self._warned_at = -math.inf
        self._away_until = -math.inf

    async def hit(self, limit: RateLimitItem, key: tuple[str, ...]) -> bool:
        if time.monotonic() < self._away_until:
            return True
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_S):
                return await self._limiter.hit(limit, *key)
        except (StorageError, TimeoutError) as error:
            self._storage_unavailable(error)
            return True

    def _storage_unavailable(self, error: Exception) -> None:
        now = time.monotonic()
        self._away_until = now + STORAGE_BACKOFF_S
        if now - self._warned_at >= STORAGE_WARN_EVERY_S:
            self._warned_at = now
            reason = repr(getattr(error, "storage_error", error))
            logger.warning(
                "rate-limit storage unavailable: requests are not limited meanwhile", extra={"reason": reason}
            )

    async def reset_time(self, limit: RateLimitItem, key: tuple[str, ...]) -> float:
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_S):
                return (await self._limiter.get_window_stats(limit, *key)).reset_time
        except (StorageError, TimeoutError) as error:  # it refused the hit a moment ago: a whole window is safe
            self._storage_unavailable(error)
            return time.time() + limit.get_expiry()


@dataclass
class _Window:
    expiry: int
    hits: deque[float] = field(default_factory=deque)  # oldest first, all within the window after a hit


class _MemoryWindows:
    """memory://: the moving window `limits` keeps (a hit is refused when `limit.amount` hits are already in the
    last `expiry` seconds; the window resets when its oldest hit leaves it), kept here without locks or tasks:
    `limits`' async memory storage starts an expiry task on almost every hit, which hands a bisect to a thread
    and holds the key's lock meanwhile — most of a request's rate-limit cost."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._next_sweep = time.time() + SWEEP_EVERY_S

    async def hit(self, limit: RateLimitItem, key: tuple[str, ...]) -> bool:
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        window_key = limit.key_for(*key)
        window = self._windows.get(window_key)
        if window is None:
            window = self._windows[window_key] = _Window(limit.get_expiry())
        hits, cutoff = window.hits, now - window.expiry
        while hits and hits[0] < cutoff:
            hits.popleft()
        if len(hits) >= limit.amount:
            return False
        hits.append(now)
        return True

    async def reset_time(self, limit: RateLimitItem, key: tuple[str, ...]) -> float:
        """As `limits` reports it: the oldest hit still in the window, plus the window (the oldest hit when none is
        left in it, now when there is none: a 0/… limit)."""
        window = self._windows[limit.key_for(*key)]
        now = time.time()
        cutoff = now - window.expiry
        start = next((hit for hit in window.hits if hit > cutoff), window.hits[0] if window.hits else now)
        return start + window.expiry

    def _sweep(self, now: float) -> None:
        self._windows = {
            key: window
            for key, window in self._windows.items()
            if window.hits and window.hits[-1] >= now - window.expiry
        }
        self._next_sweep = now + SWEEP_EVERY_S


class RateLimiter:
    def __init__(self, storage_uri: str = MEMORY_STORAGE) -> None:
        self._windows: _Windows = _MemoryWindows() if storage_uri == MEMORY_STORAGE else _LimitsWindows(storage_uri)

    async def check(self, limit: RateLimitItem, *key: str) -> None:
        """Count one hit against `key`; raise 429 when it is over `limit`."""
        if await self._windows.hit(limit, key):
            return
        reset_time = await self._windows.reset_time(limit, key)
        retry_after = max(1, math.ceil(reset_time - time.time()))
        raise ApiError(
            "rate_limit_error",
            f"Too many requests: the limit is {limit}.",
            code="rate_limit",
            retry_after=retry_after,
        )


def parse_limit(value: str) -> RateLimitItem:
    return parse(value)
