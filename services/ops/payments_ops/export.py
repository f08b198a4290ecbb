"""`payments-ops export [--since T] [--until T] [--workspace W] [--type T …]`: every matching event, in store
order, as JSON lines on stdout.

Streams: the store is read page by page and each line is written as it is read, so memory stays flat however
many events there are. Times are ISO 8601 (a date alone is midnight UTC) or Unix seconds; `--since` is
inclusive, `--until` exclusive, both compared with the event's `occurred_at`. A progress line goes to stderr
only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from payments_shared.eventstore.port import RecordedEvent
from payments_shared.projections.readmodel import epoch_us

from payments_ops import stores
from payments_ops.objects import event_json, event_time
from payments_ops.progress import ProgressLine


@dataclass(frozen=True)
class Selection:
    since_us: int | None
    until_us: int | None
    workspace: str | None
    types: frozenset[str]

    def wants(self, event: RecordedEvent) -> bool:
        if self.types and event.type not in self.types:
            return False
        if self.workspace is not None and event.metadata.get("workspace") != self.workspace:
            return False
        if self.since_us is None and self.until_us is None:
            return True
        at = epoch_us(event_time(event))
        return (self.since_us is None or at >= self.since_us) and (self.until_us is None or at < self.until_us)


def register(commands: Any) -> None:
    export = commands.add_parser("export", help="events as JSON lines, in store order")
    export.add_argument("--since", type=moment, help="from this time (inclusive): ISO 8601 or Unix seconds")
    export.add_argument("--until", type=moment, help="up to this time (exclusive): ISO 8601 or Unix seconds")
    export.add_argument("--workspace", help="only this workspace's events")
    export.add_argument(
        "--type", action="append", default=[], help="only these event types (repeat, or separate with commas)"
    )
    export.set_defaults(run=run)


def moment(raw: str) -> int:
    """A command-line time → microseconds since the epoch."""
    try:
        if raw.lstrip("-").isdigit():
            return int(raw) * 1_000_000
        return epoch_us(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an ISO 8601 time or Unix seconds") from None


def run(arguments: argparse.Namespace) -> int:
    types = frozenset(name.strip() for value in arguments.type for name in value.split(",") if name.strip())
    selection = Selection(arguments.since, arguments.until, arguments.workspace, types)
    written = asyncio.run(export(selection, sys.stdout))
    print(f"exported {written} events", file=sys.stderr)
    return 0


async def export(selection: Selection, out: TextIO) -> int:
    progress = ProgressLine("export")
    read = written = 0
    async with stores.event_store(stores.settings()) as store:
        async for event in store.read_all(0):
            read += 1
            if selection.wants(event):
                out.write(json.dumps(event_json(event), separators=(",", ":"), ensure_ascii=False))
                out.write("\n")
                written += 1
            progress.update(read, event.position)
    out.flush()
    progress.update(read, force=True)
    progress.finish()
    return written
