"""An HTTP server on 127.0.0.1 that speaks Authorize.net's XML API, for tests (never production code).

Requests are checked against the published schema through its generated bindings (`apicontractsv1`, which
enforce required elements and element order): a document they refuse is answered E00003, an unknown root E00004,
wrong credentials E00007. Answers start with the UTF-8 BOM, as Authorize.net's do.

Control, as plain methods: `fail_next(mode)` with mode "timeout" (record the request, then stall without
answering), "drop" (record it, then close the connection without a word), "500" (record it, answer HTTP 500) or
"refuse500" (answer 500 without acting); `decline_next(reason)`; `settle()`; `lag_reports(times)`;
`review(trans_id, approve)` (the merchant's decision on a held transaction); `others_paid_since(count)` (other
payments, newer than all so far: a page of the unsettled list fills up);
`advance_clock(seconds)` (the server's clock moves on, e.g. past midnight UTC).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyxb
from authorizenet import apicontractsv1
from lxml import etree

from tests.authnet_server.responses import NAMESPACE, document
from tests.authnet_server.state import AuthnetState

LOGIN_ID = "test-login"
TRANSACTION_KEY = "5KP3u95bQpvTest1"  # 16 characters, as real keys
_SCHEMA_LOCK = threading.Lock()  # pyxb's parser is not thread-safe


@dataclass
class Fault:
    mode: str  # timeout | drop | 500 | refuse500
    only: str | None  # a request root name, or any request


class AuthnetTestServer:
    def __init__(self, login_id: str = LOGIN_ID, transaction_key: str = TRANSACTION_KEY, stall_s: float = 3.0) -> None:
        self.state = AuthnetState(login_id, transaction_key)
        self.stall_s = stall_s
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._serve, name="authnet-test-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/xml/v1/request.api"

    def _serve(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)

    def start(self) -> AuthnetTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- control ----------------------------------------------------------------------------------------

    def fail_next(self, mode: str, only: str | None = "createTransactionRequest", times: int = 1) -> None:
        assert mode in ("timeout", "drop", "500", "refuse500"), mode
        with self._faults_lock:
            self._faults.extend(Fault(mode, only) for _ in range(times))

    def decline_next(self, reason: int = 2) -> None:
        with self.state.lock:
            self.state.forced_reasons.append(reason)

    def settle(self) -> None:
        self.state.settle()

    def lag_reports(self, times: int = 1) -> None:
        """The next `times` unsettled lists miss the last minute's transactions, as a lagging report would."""
        with self.state.lock:
            self.state.lagging_lists += times

    def review(self, trans_id: str, approve: bool = True) -> None:
        """The merchant approves (or declines) a transaction held for review."""
        self.state.review(trans_id, approve)

    def others_paid_since(self, count: int) -> None:
        """`count` other payments made after every transaction so far (a busy merchant's): newer in the lists."""
        self.state.add_other_payments(count)

    def advance_clock(self, seconds: float) -> None:
        with self.state.lock:
            self.state.clock_offset_s += seconds

    def _take_fault(self, kind: str) -> Fault | None:
        with self._faults_lock:
            for index, fault in enumerate(self._faults):
                if fault.only in (None, kind):
                    return self._faults.pop(index)
        return None

    # -- serving ----------------------------------------------------------------------------------------

    def handle(self, body: bytes) -> tuple[str, bytes]:
        """The request's root name and the answer document."""
        try:
            root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as error:
            return "", document(
                "ErrorResponse", "Error", "E00003", f"An error occurred while parsing the XML: {error}", None
            )
        qname = etree.QName(root)
        known = qname.localname.endswith("Request") and hasattr(apicontractsv1, qname.localname)
        if qname.namespace != NAMESPACE or not known:
            return qname.localname, document(
                "ErrorResponse", "Error", "E00004", "The name of the requested API method is invalid.", None
            )
        problem = _schema_problem(body)
        if problem is not None:
            return qname.localname, document("ErrorResponse", "Error", "E00003", problem, None)
        return qname.localname, self.state.answer(root)


def _schema_problem(body: bytes) -> str | None:
    with _SCHEMA_LOCK:
        try:
            apicontractsv1.CreateFromDocument(body)
        except pyxb.PyXBException as error:
            return f"The request does not follow AnetApiSchema.xsd: {type(error).__name__} {str(error)[:200]}"
        except Exception as error:  # pyxb raises plain SAX errors on some malformed input
            return f"The request does not follow AnetApiSchema.xsd: {type(error).__name__}"
    return None


def _handler_for(server: AuthnetTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            kind, answer = _peek_kind(body), b""
            fault = server._take_fault(kind)
            if fault is not None and fault.mode == "refuse500":
                self._send(500, b"Internal Server Error", "text/plain")
                return
            _, answer = server.handle(body)
            if fault is None:
                self._send(200, answer, "application/xml; charset=utf-8")
            elif fault.mode == "500":
                self._send(500, b"<html><body>500 Internal Server Error</body></html>", "text/html")
            elif fault.mode == "timeout":
                server._stop.wait(server.stall_s)
                self._drop()
            else:
                self._drop()

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet in tests

    return Handler


def _peek_kind(body: bytes) -> str:
    try:
        name: str = etree.QName(etree.fromstring(body)).localname
        return name
    except (etree.XMLSyntaxError, ValueError):
        return ""


@contextlib.contextmanager
def running_server(**kwargs: Any) -> Iterator[AuthnetTestServer]:
    server = AuthnetTestServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
