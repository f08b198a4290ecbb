"""`GET /healthz` (the process is alive) and `GET /readyz` (every dependency answers its ping: 200, else 503
naming what failed)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 3.0


async def _run_check(check: ReadinessCheck) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):  # not wait_for: on 3.11 it can swallow a cancel
            await check()
    except TimeoutError:
        return "timed out"
    except Exception as error:  # any failure means "not ready"; its kind is the detail
        return type(error).__name__
    return "ok"


def health_router(checks: Mapping[str, ReadinessCheck]) -> APIRouter:
    """`checks` maps a dependency's name (`broker`, `eventstore`) to a coroutine that raises when it is down."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        names = list(checks)
        results = await asyncio.gather(*(_run_check(checks[name]) for name in names))
        detail = dict(zip(names, results, strict=True))
        ready = all(result == "ok" for result in results)
        if not ready:
            logger.warning("not ready", extra={"checks": detail})
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": detail}, 200 if ready else 503)

    return router
