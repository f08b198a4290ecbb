"""Rate limits in Redis (`RATE_LIMIT_STORAGE=redis://…`), shared by several gateway processes, against the local
Redis: the limiter alone, then two real servers over HTTP. And what happens while Redis cannot answer: requests
go through (with a warning) within STORAGE_TIMEOUT_S, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from payments_shared import ratelimit
from payments_shared.errors import ApiError
from payments_shared.ratelimit import RateLimiter, parse_limit

from tests.blackbox.server import Api, embedded_server, free_port

pytestmark = pytest.mark.redis


def unique_key() -> str:
    return f"ws_{uuid.uuid4().hex[:12]}"  # Redis outlives the test run: never reuse a key


async def decisions(limiters: list[RateLimiter], limit: str, key: str, hits: int) -> list[int | None]:
    """None for an allowed hit, else its Retry-After; hits go round the limiters."""
    made: list[int | None] = []
    for index in range(hits):
        try:
            await limiters[index % len(limiters)].check(parse_limit(limit), "workspace", key)
            made.append(None)
        except ApiError as refused:
            assert (refused.status, refused.type) == (429, "rate_limit_error")
            made.append(None if refused.retry_after is None else int(refused.retry_after))
    return made


async def test_two_limiters_share_one_budget_in_redis(redis_url: str) -> None:
    made = await decisions([RateLimiter(redis_url), RateLimiter(redis_url)], "3/minute", unique_key(), 5)
    assert made[:3] == [None, None, None]
    assert all(retry_after is not None and 1 <= retry_after <= 60 for retry_after in made[3:])


async def test_keys_do_not_share_a_budget(redis_url: str) -> None:
    limiter = RateLimiter(redis_url)
    assert await decisions([limiter], "1/minute", unique_key(), 2) == [None, 60]
    assert (await decisions([limiter], "1/minute", unique_key(), 1)) == [None]


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a Redis behind a dropped network)."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.mark.parametrize("where", ["refused", "silent"])
async def test_an_unreachable_redis_lets_requests_through_with_one_warning(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    with silent_server() as silent_port:
        port = free_port() if where == "refused" else silent_port
        limiter = RateLimiter(f"redis://127.0.0.1:{port}")
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=ratelimit.__name__):
            made = await decisions([limiter], "1/minute", unique_key(), 3)
    assert made == [None, None, None]
    assert time.monotonic() - started < 3 * ratelimit.STORAGE_TIMEOUT_S + 1.0
    warnings = [record for record in caplog.records if record.name == ratelimit.__name__]
    assert len(warnings) == 1 and "not limited" in warnings[0].getMessage()


async def test_a_redis_that_stopped_answering_is_left_alone_for_a_while_then_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each request of a Redis brownout waited STORAGE_TIMEOUT_S (a probe: charges from 0.03 to 0.5-0.6 s each).
    monkeypatch.setattr(ratelimit, "STORAGE_BACKOFF_S", 2.0, raising=False)
    with silent_server() as port:
        limiter = RateLimiter(f"redis://127.0.0.1:{port}")
        assert await decisions([limiter], "1/minute", unique_key(), 1) == [None]  # waits, finds it silent
        started = time.monotonic()
        assert await decisions([limiter], "1/minute", unique_key(), 20) == [None] * 20
        assert time.monotonic() - started < ratelimit.STORAGE_TIMEOUT_S  # not asked: no wait at all
        await asyncio.sleep(2.0)
        started = time.monotonic()
        assert await decisions([limiter], "1/minute", unique_key(), 1) == [None]
        assert time.monotonic() - started >= ratelimit.STORAGE_TIMEOUT_S * 0.9  # asked again


def test_two_servers_share_a_workspaces_write_budget(redis_url: str, tmp_path: Path) -> None:
    env = {"RATE_LIMIT_STORAGE": redis_url, "RATE_LIMIT_WRITE": "4/minute"}
    with (
        embedded_server(tmp_path / "one", **env) as one,
        embedded_server(tmp_path / "two", **env) as two,
        httpx.Client(base_url=one.base_url, timeout=30) as first,
        httpx.Client(base_url=two.base_url, timeout=30) as second,
    ):
        workspace = unique_key()
        apis = [Api(first, workspace), Api(second, workspace)]
        statuses = [apis[index % 2].charge().status_code for index in range(6)]
        assert statuses == [201, 201, 201, 201, 429, 429]
        refused = apis[0].charge()
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert Api(first).charge().status_code == 201  # another workspace has its own budget
