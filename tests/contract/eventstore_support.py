"""Helpers for the event-store contract suite: where a KurrentDB server is, read-only files, collecting events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from payments_shared.eventstore.port import NewEvent, RecordedEvent

KURRENTDB_IMAGE = os.environ.get("KURRENTDB_IMAGE", "docker.kurrent.io/kurrent-latest/kurrentdb:latest")
NO_SERVER = "no KurrentDB server: set EVENTSTORE_URI=kurrentdb://… or run with Docker"
WAIT_S = 15.0  # a guard against hanging, not a timing assertion


def configured_kurrent_uri() -> str | None:
    uri = os.environ.get("EVENTSTORE_URI", "")
    return uri if uri.startswith(("kurrentdb://", "esdb://", "kurrentdb+discover://", "esdb+discover://")) else None


def docker_usable() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def kurrentdb_container() -> Iterator[str]:
    """A throwaway single-node insecure KurrentDB (testcontainers); yields its URI once it answers."""
    from kurrentdbclient import KurrentDBClient
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(KURRENTDB_IMAGE)
        .with_env("KURRENTDB_INSECURE", "true")
        .with_env("KURRENTDB_MEM_DB", "true")
        .with_env("KURRENTDB_RUN_PROJECTIONS", "None")
        .with_exposed_ports(2113)
    )
    with container:
        uri = f"kurrentdb://{container.get_container_host_ip()}:{container.get_exposed_port(2113)}?tls=false"
        deadline = time.monotonic() + 90
        while True:
            try:
                client = KurrentDBClient(uri)
                client.get_commit_position()
                client.close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield uri


def new_stream(prefix: str = "contract") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def events(count: int, type_: str = "Happened") -> list[NewEvent]:
    return [NewEvent(type_, {"n": n}, {"$correlationId": str(uuid.uuid4())}) for n in range(count)]


async def collect_until(
    subscription: AsyncIterator[RecordedEvent], streams: set[str], last_id: uuid.UUID
) -> list[RecordedEvent]:
    """The subscription's events of `streams`, up to and including the event `last_id`."""
    seen: list[RecordedEvent] = []
    async with asyncio.timeout(WAIT_S):
        async for event in subscription:
            if event.stream in streams:
                seen.append(event)
                if event.id == last_id:
                    return seen
    raise AssertionError("subscription ended")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` read-only for real: the immutable flag as root (root ignores modes), chmod otherwise."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
            pytest.skip("running as root without a usable chattr: cannot make a file read-only")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)
