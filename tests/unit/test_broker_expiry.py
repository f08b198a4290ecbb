"""payments_shared.broker.expiry: which requests count as expired, and that an expired one is answered unrun."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from payments_shared.broker.expiry import (
    CLOCK_SKEW_S,
    EXPIRES_AT_HEADER,
    expired,
    expiring,
    shedding_expired,
)
from payments_shared.broker.port import Message

NOW = 1_800_000_000.0


def stamped(value: str) -> Message:
    return Message(body={"type": "get_transaction"}, headers={EXPIRES_AT_HEADER: value, "traceparent": "tp"})


def test_expiring_stamps_the_time_after_which_no_one_waits_and_keeps_the_other_headers() -> None:
    message = expiring(Message(body={}, headers={"traceparent": "tp"}), 10.0, now=lambda: NOW)
    assert message.headers == {"traceparent": "tp", EXPIRES_AT_HEADER: "1800000010.000"}


@pytest.mark.parametrize(
    ("headers", "now", "is_expired"),
    [
        ({}, NOW + 3600, False),  # a command: never stamped, never shed
        ({EXPIRES_AT_HEADER: str(NOW)}, NOW + CLOCK_SKEW_S, False),  # within the clocks' tolerance
        ({EXPIRES_AT_HEADER: str(NOW)}, NOW + CLOCK_SKEW_S + 0.01, True),
        ({EXPIRES_AT_HEADER: str(NOW)}, NOW - 5, False),
        ({EXPIRES_AT_HEADER: "soon"}, NOW + 3600, False),  # unreadable: run it rather than guess
        ({EXPIRES_AT_HEADER: "nan"}, NOW + 3600, False),
        ({EXPIRES_AT_HEADER: "-inf"}, NOW, False),
    ],
)
def test_expired(headers: dict[str, str], now: float, is_expired: bool) -> None:
    assert expired(Message(body={}, headers=headers), now) is is_expired


async def test_an_expired_request_is_answered_503_without_running_and_a_live_one_runs() -> None:
    ran: list[Message] = []

    async def handler(message: Message) -> Mapping[str, Any] | None:
        ran.append(message)
        return {"status": 200, "body": {}, "headers": {}}

    handle = shedding_expired(handler, now=lambda: NOW)
    reply = await handle(stamped(str(NOW - 30)))
    assert ran == []
    assert reply is not None
    assert reply["status"] == 503
    assert reply["body"]["error"]["code"] == "request_expired"
    assert reply["headers"]["Retry-After"] == "1"

    live = stamped(str(NOW + 5))
    assert await handle(live) == {"status": 200, "body": {}, "headers": {}}
    assert ran == [live]
