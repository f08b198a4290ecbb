"""`payments-ops`: the operator's command line. Each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from payments_shared.broker.port import BrokerError
from payments_shared.eventstore.port import EventStoreError
from payments_shared.settings import ConfigError

from payments_ops import audit, dlq, export, replay, resolve, stores, tokens, verify

STOPPED_READING_STATUS = 141  # a shell's status for a command whose reader went away (128 + SIGPIPE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payments-ops", description="Operate the payments platform.")
    commands = parser.add_subparsers(dest="command", required=True)
    tokens.register(commands)
    dlq.register(commands)
    audit.register(commands)
    export.register(commands)
    verify.register(commands)
    replay.register(commands)
    resolve.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        status: int = arguments.run(arguments)
    except BrokenPipeError:  # `payments-ops export | head`: the reader has what it wanted
        status = _stop_writing()
    except (EventStoreError, BrokerError, OSError, stores.ReadModelUnusable) as error:  # one line, status 1
        print(f"payments-ops {arguments.command}: {error}", file=sys.stderr)
        status = 1
    except ConfigError as error:  # a wrong setting: its one line, status 2, as the services say it
        print(error.line, file=sys.stderr)
        status = 2
    sys.exit(status)


def _stop_writing() -> int:
    """Quietly, as a shell command ends when its reader goes away: what is still buffered for stdout goes nowhere
    (flushed at exit, it would raise again)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return STOPPED_READING_STATUS
