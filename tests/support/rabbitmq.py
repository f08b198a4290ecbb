"""A throwaway RabbitMQ virtual host (via `rabbitmqctl`), so a test module or a benchmark never shares queues with
anything else running against the same server."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator


def rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def fresh_vhost(server_url: str, prefix: str = "test") -> Iterator[str]:
    """Yield `server_url` pointed at a new virtual host (guest has every permission on it); deleted afterwards."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield server_url.rstrip("/") + "/" + vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)
