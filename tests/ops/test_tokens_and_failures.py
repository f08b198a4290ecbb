"""`payments-ops token create` refuses what would mint a useless token, and any command whose store or broker is
out of reach says so in one line with status 1 (the real command, in a subprocess)."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from tests.blackbox.server import JWT_SECRET, free_port
from tests.ops.conftest import run_ops


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        (["--workspace", "", "--permissions", "payments:admin"], "argument --workspace: must not be empty"),
        (["--workspace", "ws", "--permissions", "payments:admin", "--ttl", "-5"], "argument --ttl: '-5' is not"),
        (["--workspace", "ws", "--permissions", "payments:admin", "--ttl", "soon"], "argument --ttl: 'soon' is not"),
        (["--workspace", "ws", "--permissions", "payments admin"], "argument --permissions: 'payments admin' is not"),
        (["--workspace", "ws", "--permissions", ","], "argument --permissions: ',' is not"),
        # Latin-1 bytes (b"caf\xe9") in a UTF-8 locale: Python decodes them to a lone surrogate, which the gateway
        # refuses in a token.
        (["--workspace", "caf\udce9", "--permissions", "payments:admin"], "argument --workspace: is not valid UTF-8"),
        (["--workspace", "ws", "--permissions", "payments:admin", "--sub", "\udcff"], "argument --sub: is not valid"),
        (["--workspace", "ws\n", "--permissions", "payments:admin"], "argument --workspace: must not hold a control"),
    ],
)
def test_a_token_the_gateway_would_refuse_is_not_minted(tmp_path: Path, arguments: list[str], refusal: str) -> None:
    ran = run_ops(tmp_path, "token", "create", *arguments, PAYMENTS_JWT_SECRET=JWT_SECRET)
    assert (ran.status, ran.stdout) == (2, "")
    assert refusal in ran.stderr


def test_a_token_carries_what_was_asked(tmp_path: Path) -> None:
    arguments = ["--workspace", "ws_café", "--permissions", "payments:admin, customer:read", "--ttl", "60"]
    ran = run_ops(tmp_path, "token", "create", *arguments, PAYMENTS_JWT_SECRET=JWT_SECRET)
    assert ran.status == 0, ran.stderr
    claims = jwt.decode(ran.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    assert (claims["workspace"], claims["permissions"], claims["exp"] - claims["iat"]) == (
        "ws_café",
        ["payments:admin", "customer:read"],
        60,
    )


@pytest.mark.parametrize("command", [["audit", "txn_abc"], ["verify"], ["export"]])
def test_an_unreachable_event_store_is_one_line_and_status_1(tmp_path: Path, command: list[str]) -> None:
    ran = run_ops(tmp_path, *command, EVENTSTORE_URI=f"kurrentdb://127.0.0.1:{free_port()}?tls=false")
    assert ran.status == 1
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"payments-ops {command[0]}: kurrentdb: "), ran.stderr


@pytest.mark.parametrize("command", [["audit", "txn_abc"], ["verify"], ["export"], ["replay", "transactions"]])
def test_a_data_dir_with_no_event_store_is_an_error_not_an_empty_all_clear(tmp_path: Path, command: list[str]) -> None:
    """A mistyped DATA_DIR: `verify` said 'verified 0 streams: 0 violation(s)' and left an empty store behind."""
    typo = tmp_path / "typo"
    ran = run_ops(typo, *command)
    assert ran.status == 1
    assert ran.stderr.strip().splitlines() == [
        f"payments-ops {command[0]}: no event store at {typo / 'events.db'} (check DATA_DIR or EVENTSTORE_URI)"
    ]
    assert not typo.exists()


@pytest.mark.parametrize("command", [["verify"], ["export"]])
def test_an_empty_events_file_is_no_event_store_and_is_left_empty(tmp_path: Path, command: list[str]) -> None:
    """A zero-byte events.db (`touch`, a failed copy) verified as an empty store, and got a schema written in."""
    empty = tmp_path / "events.db"
    empty.touch()
    ran = run_ops(tmp_path, *command)
    assert (ran.status, ran.stderr.strip()) == (
        1,
        f"payments-ops {command[0]}: no event store at {empty} (check DATA_DIR or EVENTSTORE_URI)",
    )
    assert empty.stat().st_size == 0


@pytest.mark.parametrize(
    ("command", "environment", "variable"),
    [
        (
            ["token", "create", "--workspace", "ws", "--permissions", "payments:admin"],
            {"PAYMENTS_JWT_SECRET": ""},
            "PAYMENTS_JWT_SECRET",
        ),
        (["export"], {"EVENTSTORE_URI": "mysql://db"}, "EVENTSTORE_URI"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it_and_status_2(
    tmp_path: Path, command: list[str], environment: dict[str, str], variable: str
) -> None:
    ran = run_ops(tmp_path, *command, **environment)
    assert ran.status == 2, ran.stderr  # an empty secret was a traceback; a wrong URI status 1
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"configuration error: {variable} "), ran.stderr


def test_a_replay_position_past_any_event_store_is_refused_in_one_line(tmp_path: Path) -> None:
    ran = run_ops(tmp_path, "replay", "transactions", "--from-position", "99999999999999999999")
    assert (ran.status, ran.stderr.strip()) == (
        2,
        f"payments-ops replay: --from-position must be from 0 to {2**63 - 1}",
    )


def test_a_broker_url_that_does_not_parse_is_one_line_without_the_url(tmp_path: Path) -> None:
    ran = run_ops(tmp_path, "dlq", "list", BROKER_URL="amqp://guest:s3cret@[::1")
    assert ran.status == 2
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: BROKER_URL is not a valid amqp:// URL")
    assert "s3cret" not in ran.stderr


@pytest.mark.parametrize("command", [["dlq", "list"], ["dlq", "requeue", "m1"]])
def test_an_unreachable_broker_is_one_line_and_status_1(tmp_path: Path, command: list[str]) -> None:
    ran = run_ops(tmp_path, *command, BROKER_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    assert ran.status == 1, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("payments-ops dlq: cannot connect to RabbitMQ: "), ran.stderr
