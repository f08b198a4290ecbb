"""Clients that hold connections. A request must arrive whole within `HTTP_REQUEST_TIMEOUT_S` (an idle connection
is closed, a late one answered 408), connections past `HTTP_MAX_CONNECTIONS` are closed at once, and a client that
goes away in the middle of its request is not logged as a server error. Each case on a real server over raw
sockets; the server goes on answering others."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.blackbox.server import (
    Server,
    base_env,
    embedded_server,
    free_port,
    mint_token,
    new_workspace,
    start_process,
    wait_ready,
)

API = "/api/v1/payments"
REQUEST_TIMEOUT_S = 1.0
CAP = 12
OPEN_FILES = 600  # the flood test's server: its default cap is then 150 connections
FLOOD_THREADS = 8
WAIT_S = 10.0  # how long a test waits for what should take REQUEST_TIMEOUT_S (a slow machine has its pauses)


@pytest.fixture(scope="module")
def hurried(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("hurried")
    with embedded_server(data_dir, HTTP_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S)) as running:
        yield running


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with embedded_server(tmp_path_factory.mktemp("capped"), HTTP_MAX_CONNECTIONS=str(CAP)) as running:
        yield running


def connect(server: Server) -> socket.socket:
    address = urlparse(server.base_url)
    return socket.create_connection((address.hostname, address.port), timeout=WAIT_S)


def read_all(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    reply = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(4096):
            reply += chunk
    return reply


def charge_head(token: str, content_length: int) -> bytes:
    return (
        f"POST {API}/charge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


def assert_408(reply: bytes) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert json.loads(body)["error"]["code"] == "request_timeout"


def error_lines(log_path: Path) -> list[str]:
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if '"level": "error"' in line or "Traceback" in line]


def assert_still_serving(server: Server) -> None:
    assert httpx.get(f"{server.base_url}/healthz", timeout=WAIT_S).status_code == 200


def test_a_connection_that_sends_nothing_is_closed(hurried: Server) -> None:
    with connect(hurried) as connection:
        assert read_all(connection) == b""  # closed, nothing to answer
    assert_still_serving(hurried)


def test_headers_trickled_past_the_deadline_are_answered_408(hurried: Server) -> None:
    """A byte now and then does not keep a request alive: the deadline counts from its start."""
    with connect(hurried) as connection:
        connection.sendall(f"GET {API}/customers HTTP/1.1\r\nHost: x\r\n".encode())
        with contextlib.suppress(OSError):  # the server closes the connection at the deadline
            for _ in range(int(WAIT_S / 0.2)):
                connection.sendall(b"X")
                time.sleep(0.2)
        assert_408(read_all(connection))
    assert_still_serving(hurried)


def test_a_body_that_stops_arriving_is_answered_408_and_is_no_server_error(hurried: Server) -> None:
    token = mint_token(new_workspace())
    with connect(hurried) as connection:
        connection.sendall(charge_head(token, 100) + b'{"amount":')
        assert_408(read_all(connection))
    assert_still_serving(hurried)
    assert error_lines(hurried.processes[0].log_path) == []


def test_a_client_that_goes_away_mid_body_is_no_server_error(hurried: Server) -> None:
    log_path = hurried.processes[0].log_path
    token = mint_token(new_workspace())
    with connect(hurried) as connection:
        connection.sendall(charge_head(token, 100) + b'{"amount":')
    deadline = time.monotonic() + WAIT_S
    while "went away" not in log_path.read_text(errors="replace") and not error_lines(log_path):
        assert time.monotonic() < deadline, "the server logged nothing about the client that went away"
        time.sleep(0.05)
    assert error_lines(log_path) == []
    assert_still_serving(hurried)


def test_a_request_sent_slowly_within_the_deadline_is_answered(hurried: Server) -> None:
    """The deadline ends when the request is in: answering it (and the next one on the connection) is not timed."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(hurried) as connection:
        for second_request in (False, True):
            connection.sendall(request[:10])
            time.sleep(REQUEST_TIMEOUT_S / 4)
            connection.sendall(request[10:])
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += connection.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200 "), (second_request, reply[:200])
            length = int(next(line for line in reply.split(b"\r\n") if line.lower().startswith(b"content-length"))
                         .split(b":")[1])  # fmt: skip
            while len(reply.partition(b"\r\n\r\n")[2]) < length:
                reply += connection.recv(4096)


def test_connections_past_the_cap_are_closed_at_once(capped: Server) -> None:
    """Each connection past the cap is closed as it comes (a slow client's deadline is 15 s away), so a flood of
    them cannot use up the process's file descriptors; once they go, new clients are served again."""
    held = [connect(capped) for _ in range(CAP + 8)]
    closed: set[socket.socket] = set()
    try:
        deadline = time.monotonic() + WAIT_S / 2  # far less than the 15 s a connection has for its request
        while len(closed) < 8 and time.monotonic() < deadline:
            readable, _, _ = select.select([c for c in held if c not in closed], [], [], 0.1)
            closed.update(connection for connection in readable if _closed(connection))
        assert len(closed) >= 8, f"{len(closed)} of {len(held)} connections were closed"
    finally:
        for connection in held:
            connection.close()
    deadline = time.monotonic() + WAIT_S
    while True:  # the server notices the clients' closes as it reads them
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{capped.base_url}/healthz", timeout=WAIT_S).status_code == 200:
                break
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _closed(connection: socket.socket) -> bool:
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_flood_of_connections_never_runs_the_process_out_of_file_descriptors(tmp_path: Path) -> None:
    """More connections at once than the process may open files, against the default cap (the open-file limit
    less a reserve): none is refused by the kernel's "too many open files" (asyncio would log each, over and
    over), the flood's idle connections go at their deadline, and the server answers again."""
    port = free_port()
    env = base_env(tmp_path, PORT=str(port), BROKER_URL="memory://", HTTP_REQUEST_TIMEOUT_S="2")
    limited = (
        f"import resource, runpy; resource.setrlimit(resource.RLIMIT_NOFILE, ({OPEN_FILES}, {OPEN_FILES})); "
        "runpy.run_module('payments_embedded', run_name='__main__')"
    )
    process = start_process("limited", ["-c", limited], env, tmp_path / "logs")
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, [process])
        flood: list[socket.socket] = []

        def connect_many() -> None:  # several at once: the server accepts them in bursts
            with contextlib.suppress(OSError):  # the listen queue may fill: the flood is as big as it gets
                for _ in range(OPEN_FILES // 2):
                    flood.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S))

        with ThreadPoolExecutor(FLOOD_THREADS) as pool:
            for _ in range(FLOOD_THREADS):
                pool.submit(connect_many)
        time.sleep(1.0)  # the server accepts (and closes what is past the cap) meanwhile
        for connection in flood:
            connection.close()
        deadline = time.monotonic() + WAIT_S
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/healthz", timeout=WAIT_S).status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        log = process.log_path.read_text(errors="replace")
        assert "out of system resource" not in log
        assert "closing new connections" in log  # the cap was reached: the test flooded past it
    finally:
        process.stop()
