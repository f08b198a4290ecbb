"""`payments-ops`: the operator's command line. Each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from payments_ops import audit, dlq, export, replay, tokens, verify


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payments-ops", description="Operate the payments platform.")
    commands = parser.add_subparsers(dest="command", required=True)
    tokens.register(commands)
    dlq.register(commands)
    audit.register(commands)
    export.register(commands)
    verify.register(commands)
    replay.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    status: int = arguments.run(arguments)
    sys.exit(status)
