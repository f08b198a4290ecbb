"""memory:// rate limits are kept in-process (no `limits` storage, whose expiry task hops to a thread on almost
every hit); they must decide exactly as `limits`' moving window over its own memory storage did, Retry-After
included, and forget keys whose window has emptied."""

from __future__ import annotations

import math
import random
import time

import pytest
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from payments_shared import ratelimit
from payments_shared.errors import ApiError
from payments_shared.ratelimit import RateLimiter

LIMITS = ["3/second", "2/5 seconds", "5/minute", "1/second", "0/minute"]
# Multiples of 1/4 s from a whole start: exact in binary, so hits land exactly on window edges too.
STEPS = [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 2.0, 4.75, 5.0, 30.0, 60.0, 61.25]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


async def reference_outcome(limiter: MovingWindowRateLimiter, limit: RateLimitItem, *key: str) -> int | None:
    """What RateLimiter.check did with `limits`' memory storage: None when allowed, else its Retry-After."""
    if await limiter.hit(limit, *key):
        return None
    stats = await limiter.get_window_stats(limit, *key)
    return max(1, math.ceil(stats.reset_time - time.time()))


async def outcome(limiter: RateLimiter, limit: RateLimitItem, *key: str) -> int | None:
    try:
        await limiter.check(limit, *key)
    except ApiError as refused:
        assert refused.type == "rate_limit_error"
        assert refused.retry_after is not None
        return int(refused.retry_after)
    return None


@pytest.mark.parametrize("seed", range(20))
async def test_decides_as_limits_moving_window_did(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "time", clock.time)
    reference = MovingWindowRateLimiter(storage_from_string("async+memory://"))
    limiter = RateLimiter("memory://")
    rng = random.Random(seed)
    keys = [(text, parse(text), workspace) for text in LIMITS for workspace in ("ws_a", "ws_b")]
    for _ in range(400):
        clock.now += rng.choice(STEPS)
        text, limit, workspace = rng.choice(keys)
        expected = await reference_outcome(reference, limit, "workspace", workspace, text)
        assert await outcome(limiter, limit, "workspace", workspace, text) == expected, (clock.now, text)


async def test_refused_hit_says_when_the_window_has_room(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "time", clock.time)
    limiter, limit = RateLimiter(), parse("2/minute")
    await limiter.check(limit, "ws")
    clock.now += 20
    await limiter.check(limit, "ws")
    clock.now += 15
    with pytest.raises(ApiError) as refused:
        await limiter.check(limit, "ws")
    assert refused.value.retry_after == 25
    assert refused.value.headers() == {"Retry-After": "25"}
    clock.now += 25  # the first hit is exactly a minute old: still in the window, but not in `limits`' reset time
    with pytest.raises(ApiError) as refused:
        await limiter.check(limit, "ws")
    assert refused.value.retry_after == 20
    clock.now += 0.25
    await limiter.check(limit, "ws")


async def test_keys_with_an_empty_window_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "time", clock.time)
    windows = ratelimit._MemoryWindows()
    limit = parse("10/second")
    for address in range(100):
        await windows.hit(limit, ("source", str(address)))
    clock.now += ratelimit.SWEEP_EVERY_S
    await windows.hit(limit, ("source", "still-here"))
    assert list(windows._windows) == [limit.key_for("source", "still-here")]
