"""`payments-ops replay PROJECTION [--from-position N]`: rebuild a list read model from the event store.

From position 0 (the default) the model is rebuilt aside and swapped in by one transaction, so lists keep
answering meanwhile and a running service's projection simply continues from the rebuilt checkpoint. From N it
re-applies the events from N onto the current model (from its checkpoint when that is earlier, so no event is
left out). Running it twice gives the same model (idempotent).
The read model is `$DATA_DIR/readmodels.db`: run it where the worker hosting that projection keeps its
DATA_DIR (in services mode, inside that worker's container).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from payments_billing.projections import CUSTOMERS, SUBSCRIPTIONS
from payments_shared.projections.model import Projection
from payments_shared.projections.rebuild import RebuildResult, rebuild
from payments_transactions.projection import TRANSACTIONS

from payments_ops import stores
from payments_ops.progress import ProgressLine

PROJECTIONS: dict[str, Projection] = {p.name: p for p in (TRANSACTIONS, CUSTOMERS, SUBSCRIPTIONS)}
MAX_POSITION = 2**63 - 1  # the largest position an event store holds (SQLite's INTEGER)


def register(commands: Any) -> None:
    replay = commands.add_parser("replay", help="rebuild a list read model from the event store")
    replay.add_argument("projection", metavar="PROJECTION", choices=sorted(PROJECTIONS), help=", ".join(PROJECTIONS))
    replay.add_argument("--from-position", type=int, default=0, metavar="N", help="re-apply events from N on")
    replay.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    if not 0 <= arguments.from_position <= MAX_POSITION:
        print(f"payments-ops replay: --from-position must be from 0 to {MAX_POSITION}", file=sys.stderr)
        return 2
    result = asyncio.run(replay(PROJECTIONS[arguments.projection], arguments.from_position))
    print(
        f"replayed {arguments.projection}: {result.events} events read, {result.entries} entries written, "
        f"checkpoint at position {result.position}"
    )
    return 0


async def replay(projection: Projection, from_position: int) -> RebuildResult:
    progress = ProgressLine(f"replay {projection.name}")
    common = stores.settings()
    async with stores.event_store(common) as store, stores.read_model(common) as model:
        result = await rebuild(store, model, projection, from_position, progress.update)
    progress.finish()
    return result
