"""The simulator's HTTP server: stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, JSON.

The handler reads the whole request body first, names the client the call comes from (the
client of its LV-Session session, or for a login the body's clientName; looked up without
touching the session), logs the call with it, applies any fault queued for it, then runs the
route (:mod:`appendq.simulator.routes`, :mod:`appendq.simulator.admin`) against the shared
:class:`SimulatorState`. Owning the socket lets a fault stall a call or drop the connection
after the body was read. ``start_in_thread`` serves tests; ``serve`` serves the CLI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from appendq.simulator.admin import ADMIN_ROUTES
from appendq.simulator.faults import FAULT_KINDS, Fault
from appendq.simulator.model import Call, SimError
from appendq.simulator.routes import (
    LIVEVOX_ROUTES,
    Reply,
    Request,
    Route,
    find,
    normalise,
    versioned,
)
from appendq.simulator.state import SimulatorState

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        super().__init__(address, SimHandler)
        self.state = state
        #: Set at shutdown so that stalled calls stop sleeping.
        self.stopping = threading.Event()

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls
    server: SimServer
    _started = 0.0

    def parse_request(self) -> bool:
        self._started = self.server.state.now()  # the request line has just been read
        return super().parse_request()

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header on the simulator's clock (``POST /_admin/clock`` shifts it too)."""
        return super().date_time_string(self.server.state.now() if timestamp is None else timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        try:
            request = self._request()
            if request.path.startswith("_admin"):
                self._send(_run(ADMIN_ROUTES, self.server.state, request))
            else:
                self._livevox(request)
        except Exception:
            log.exception("simulator: %s %s failed", self.command, self.path)
            self.close_connection = True
            self._send(Reply(500, {"code": 500, "message": "simulator internal error"}))

    def _request(self) -> Request:
        url = urlsplit(self.path)
        return Request(
            method=self.command,
            path=normalise(url.path),
            raw_path=url.path,
            query=parse_qs(url.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_body=self._read_body(),
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            raise ValueError(f"Content-Length {length} out of range")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers up to the empty line
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _livevox(self, request: Request) -> None:
        state = self.server.state
        found = find(LIVEVOX_ROUTES, request.method, request.path)
        if state.get_dialect().unversioned_only and versioned(request.raw_path):
            found = Reply(404, {"code": 404, "message": "no such resource"})
        kind = found[0].kind if isinstance(found, tuple) else "other"
        client = _caller(state, kind, found, request)
        fault = state.take_fault(kind, client) if kind in FAULT_KINDS else None
        call = Call(self._started, request.method, request.raw_path, kind, client)
        call.fault = fault.as_json() if fault else None
        _describe(call, found, request)
        state.start_call(call)
        if not isinstance(found, tuple):
            state.finish_call(call, self._send(found))
            return
        route, match = found

        def action() -> Reply:
            return _attempt(lambda: route.action(state, request, match))

        status = self._send(action()) if fault is None else self._faulted(call, fault, action)
        state.finish_call(call, status)

    def _faulted(self, call: Call, fault: Fault, action: Callable[[], Reply]) -> int | None:
        """Play a scripted fault (see :mod:`appendq.simulator.faults`); the status sent or None."""
        log.info("simulator: fault %s on %s %s", call.fault, call.method, call.path)
        reply = action() if fault.applies_first else None
        if reply is None and call.kind == "append" and not fault.applies_late:
            self.server.state.count_append(call.client)
        if fault.stall_s:
            self.server.stopping.wait(fault.stall_s)
        if fault.drop:
            self._drop()
            return None
        if fault.status is not None:
            applied = " (the call was applied)" if fault.apply else ""
            message = f"simulated fault: {fault.status}{applied}"
            return self._send(Reply(fault.status, {"code": fault.status, "message": message}))
        return self._send(reply if reply is not None else action())

    def _send(self, reply: Reply) -> int:
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json")
        if reply.status != 204:
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            if data:
                self.wfile.write(data)
        except OSError as exc:  # the client went away (e.g. it timed out during a stall)
            log.debug("simulator: answer %s not delivered: %s", reply.status, exc)
            self.close_connection = True
        return reply.status

    def _drop(self) -> None:
        """Close the connection without a word, after the body was read."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _caller(
    state: SimulatorState, kind: str, found: tuple[Route, Any] | Reply, request: Request
) -> str | None:
    """The client a call comes from, or None: a login's clientName if it names a client; else
    the client of the live session in LV-Session (validate/logout: the session in the path)."""
    if kind == "login":
        try:
            body = request.body
        except SimError:
            return None
        return state.known_client(body.get("clientName") if isinstance(body, dict) else None)
    session_id = request.header("LV-Session")
    if session_id is None and isinstance(found, tuple):
        session_id = found[1].groupdict().get("sid")
    return state.session_client(session_id)


def _describe(call: Call, found: tuple[Route, Any] | Reply, request: Request) -> None:
    """Campaign id and, for appends, the number of records, as far as the request shows them."""
    if not isinstance(found, tuple):
        return
    groups = found[1].groupdict()
    if "cid" in groups:
        call.campaign_id = int(groups["cid"])
    if call.kind == "append":
        try:
            records = request.body.get("records")
        except (SimError, AttributeError):
            return
        call.records = len(records) if isinstance(records, list) else None


def _run(routes: tuple[Route, ...], state: SimulatorState, request: Request) -> Reply:
    found = find(routes, request.method, request.path)
    if isinstance(found, Reply):
        return found
    route, match = found
    return _attempt(lambda: route.action(state, request, match))


def _attempt(action: Callable[[], Reply]) -> Reply:
    try:
        return action()
    except SimError as exc:
        return Reply(exc.status, exc.body())
    except ValueError as exc:
        return Reply(400, {"code": 400, "message": str(exc)})


def start_in_thread(
    state: SimulatorState, host: str = "127.0.0.1", port: int = 0
) -> tuple[SimServer, str]:
    """Serve in a daemon thread (port 0: any free port); stop with ``server.shutdown()`` and
    ``server.server_close()``."""
    server = SimServer((host, port), state)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="simulator", daemon=True
    )
    thread.start()
    return server, f"http://{host}:{server.server_port}"


def serve(state: SimulatorState, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    server, url = start_in_thread(state, host, port)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("simulator: signal %s, shutting down", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(f"simulator listening on {url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("simulator stopped")
