"""Read a request body up to a limit: 413 as soon as the declared length or the bytes received pass it, before
buffering more (the same rule and error as the shared BodySizeLimit middleware, so the routes are safe when
mounted into an app without it)."""

from __future__ import annotations

from fastapi import Request
from payments_shared.http.body_limit import MAX_BODY_BYTES, BodyTooLarge


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
