"""`payments-ops verify`: re-fold every transaction, customer and subscription stream and check it against its
domain rules (no move outside the state diagram, refunds ≤ captured, …). Prints each violation on stdout and
exits 1 if there is any, 0 otherwise: an audit that the stored history is self-consistent."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from payments_shared.eventstore.port import EventStore

from payments_ops import stores
from payments_ops.checks import Violation, checker_for
from payments_ops.progress import ProgressLine


def register(commands: Any) -> None:
    verify = commands.add_parser("verify", help="check every stream against its domain rules")
    verify.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    checked, violations = asyncio.run(verify())
    for violation in violations:
        print(violation)
    print(f"verified {checked} streams: {len(violations)} violation(s)", file=sys.stderr)
    return 1 if violations else 0


async def verify() -> tuple[int, list[Violation]]:
    async with stores.event_store(stores.settings()) as store:
        streams = await _checked_streams(store)
        progress = ProgressLine("verify")
        violations: list[Violation] = []
        for count, stream in enumerate(streams, 1):
            checker = checker_for(stream)
            events = await store.read(stream)
            if checker is not None and events:
                violations.extend(checker(events))
            progress.update(count)
        progress.finish()
    return len(streams), violations


async def _checked_streams(store: EventStore) -> list[str]:
    """Every stream a checker knows, in order of first appearance (one name per stream in memory)."""
    seen: dict[str, None] = {}
    async for event in store.read_all(0):
        if event.stream not in seen and checker_for(event.stream) is not None:
            seen[event.stream] = None
    return list(seen)
