"""Many PUTs of one customer or subscription at once over real HTTP, and what every test of them checks: no
request whose change was applied keeps a 409, every 200's change is in the history, and the history holds the
changes one at a time (each requested change has its outcome before the next one is requested), which is the
order the provider applied them in."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.blackbox.server import API, new_key
from tests.support.services import StoredEvent, stored_events

TRANSIENT_CODES = ("operation_in_progress", "concurrent_change")


async def _put_all(base_url: str, token: str, path: str, bodies: list[dict[str, Any]], keys: list[str]) -> list[Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{base_url}{API}", headers=headers, timeout=60) as http:
        puts = [
            http.put(path, json=body, headers={"Idempotency-Key": key}) for body, key in zip(bodies, keys, strict=True)
        ]
        return list(await asyncio.gather(*puts))


def put_concurrently(base_url: str, token: str, path: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Every body PUT at once, each with its own key; a 409 is retried with its key until it is carried out (a
    409 that a retry replays would be a recorded answer: that fails here). The final replies, in `bodies` order."""
    keys = [new_key() for _ in bodies]
    replies = asyncio.run(_put_all(base_url, token, path, bodies, keys))
    for _ in range(20):
        waiting = [index for index, reply in enumerate(replies) if reply.status_code == 409]
        if not waiting:
            break
        for index in waiting:
            error = replies[index].json()["error"]
            assert error["code"] in TRANSIENT_CODES, replies[index].text
            assert replies[index].headers.get("Idempotent-Replayed") != "true", "a recorded 409"
        retried = asyncio.run(_put_all(base_url, token, path, [bodies[i] for i in waiting], [keys[i] for i in waiting]))
        for index, reply in zip(waiting, retried, strict=True):
            replies[index] = reply
    assert [reply.status_code for reply in replies] == [200] * len(bodies), [r.text for r in replies]
    return replies


def updates_in_order(data_dir: Path, stream: str, prefix: str) -> list[StoredEvent]:
    """The stream's updates (`{prefix}Updated` with a command id), checked to be one at a time."""
    events = [event for event in stored_events(data_dir) if event.stream == stream]
    open_request: str | None = None
    updates: list[StoredEvent] = []
    for event in events:
        if event.type == f"{prefix}UpdateRequested":
            assert open_request is None, "a change was requested while another one was open"
            open_request = event.data["command_id"]
        elif event.type in (f"{prefix}Updated", f"{prefix}UpdateFailed") and event.data.get("command_id"):
            assert event.data["command_id"] == open_request
            open_request = None
            if event.type == f"{prefix}Updated":
                updates.append(event)
    assert open_request is None
    return updates
