"""Rate limits with `limits` (moving window), storage from `RATE_LIMIT_STORAGE` (memory:// or redis://).

One `RateLimiter` per process; `check(limit, *key)` raises API.md's 429 `rate_limit_error` with `Retry-After`
when the key's budget is spent. The gateway keys by workspace and bucket (read/write); webhook-ingest keys by
source address.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from payments_shared.errors import ApiError


def _async_storage_uri(storage: str) -> str:
    return storage if storage.startswith("async+") else f"async+{storage}"


class RateLimiter:
    def __init__(self, storage_uri: str = "memory://") -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(_async_storage_uri(storage_uri)))

    async def check(self, limit: RateLimitItem, *key: str) -> None:
        """Count one hit against `key`; raise 429 when it is over `limit`."""
        if await self._limiter.hit(limit, *key):
            return
        stats = await self._limiter.get_window_stats(limit, *key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(
            "rate_limit_error",
            f"Too many requests: the limit is {limit}.",
            code="rate_limit",
            retry_after=retry_after,
        )


def parse_limit(value: str) -> RateLimitItem:
    return parse(value)
