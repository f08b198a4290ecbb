"""A client of the embedded server for tests whose provider is Stripe (localstripe or the Stripe wire-format test
server): the API of one workspace, asynchronous effects waited for, and Stripe's webhooks delivered signed."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.blackbox.server import API, EVERY_PERMISSION, Server, embedded_server, mint_token
from tests.support.services import stream_event_types
from tests.support.stripe_webhooks import signed_stripe_event
from tests.support.stripe_wire_server import StripeWireServer, running_stripe_wire

SETTLE_S = 30.0  # how long an asynchronous effect may take to show (webhook delivery, then the worker)


@dataclass
class StripeClient:
    http: httpx.Client
    workspace: str
    webhook_secret: str
    stripe: httpx.Client | None = None

    @property
    def at_stripe(self) -> httpx.Client:
        """The Stripe peer's own API, where a test acts at Stripe (the customer, the dashboard)."""
        assert self.stripe is not None, "this client was made without the Stripe peer's API"
        return self.stripe

    def call(self, method: str, route: str, body: Any = None, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {mint_token(self.workspace, EVERY_PERMISSION)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.request(method, f"{API}/{route}", json=body, headers=headers)

    def created(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.call("POST", route, body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def get(self, route: str) -> dict[str, Any]:
        response = self.call("GET", route)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def event_types(self, transaction_id: str) -> list[str]:
        return [event["type"] for event in self.get(f"transactions/{transaction_id}/events")["data"]]

    def eventually(self, route: str, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + SETTLE_S
        while True:
            current = self.get(route)
            if condition(current) or time.monotonic() > deadline:
                return current
            time.sleep(0.2)

    def deliver(self, event_type: str, obj: dict[str, Any], created: int | None = None) -> dict[str, Any]:
        """A Stripe event about `obj`, signed as Stripe signs, posted to webhook-ingest."""
        return self._post_event(event_type, obj, created)[1]

    def deliver_handled(self, data_dir: Path, event_type: str, obj: dict[str, Any], created: int | None = None) -> None:
        """`deliver`, then wait until the worker that owns the event has handled it: for an event that may rightly
        change nothing, so that there is no effect to wait for."""
        event_id, _ = self._post_event(event_type, obj, created)
        assert handled_eventually(data_dir, f"webhook-stripe-{event_id}"), f"{event_type} {event_id} not handled"

    def _post_event(self, event_type: str, obj: dict[str, Any], created: int | None) -> tuple[str, dict[str, Any]]:
        body, headers = signed_stripe_event(self.webhook_secret, event_type, obj, created)
        response = self.http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return str(json.loads(body)["id"]), answer


@dataclass(frozen=True)
class WirePeer:
    server: Server
    wire: StripeWireServer


def stripe_wire_env(api_key: str, wire: StripeWireServer, webhook_secret: str) -> dict[str, str]:
    """An embedded server's settings for Stripe at the wire-format server, the default provider."""
    return {
        "STRIPE_API_KEY": api_key,
        "STRIPE_API_BASE": wire.base_url,
        "STRIPE_WEBHOOK_SECRET": webhook_secret,
        "AUTHNET_SIGNATURE_KEY": "unused-here",
        "PAYMENTS_DEFAULT_PROVIDER": "stripe",
    }


@contextlib.contextmanager
def served_on_stripe_wire(data_dir: Path, api_key: str, webhook_secret: str, **env: str) -> Iterator[WirePeer]:
    """The embedded server whose Stripe is the Stripe wire-format server (on a thread of its own)."""
    with running_stripe_wire(api_key) as wire:
        settings = {**stripe_wire_env(api_key, wire, webhook_secret), **env}
        with embedded_server(data_dir, **settings) as server:
            yield WirePeer(server, wire)


def handled_eventually(data_dir: Path, webhook_stream: str) -> bool:
    """Whether the worker that owns the event has handled it (its `WebhookApplied`), within the settle time."""
    deadline = time.monotonic() + SETTLE_S
    while "WebhookApplied" not in stream_event_types(data_dir, webhook_stream):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
