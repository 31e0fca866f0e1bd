"""The helper's state, and the health endpoint that shows it.

`GET /live`: 200 while the helper runs and its Workload API stream has not failed for
good. `GET /ready`: 200 once the files are written and the SVID in them has not expired
(and every asked JWT-SVID is current). Both answer the same JSON (SPIFFE ID, SVID expiry,
rotations, last error), which is also how `deploy status` learns a files-mode sidecar's
own SVID expiry. The paths are spiffe-helper's (`/live`, `/ready`). `GET /metrics` is the
same state in Prometheus' text format (``_metrics``), so one port serves the kubelet's
probes and Prometheus' scrapes.

Bounded for hostile clients, since it listens on a port: at most `MAX_CONNECTIONS`
connections at once (one more is closed before it is read), `REQUEST_TIMEOUT_S` for the
whole connection however slowly the client sends, no keep-alive, no request body read, only
GET and HEAD, a listen backlog of 64; request lines and headers are capped by
`http.server` itself (64 KiB, 100 headers).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import socket
import socketserver
import threading
from dataclasses import dataclass
from typing import Any

from ._metrics import METRICS_CONTENT_TYPE, METRICS_PATH, HelperCounts, HelperMetrics

__all__ = ["MAX_CONNECTIONS", "REQUEST_TIMEOUT_S", "HealthServer", "HelperState"]

MAX_CONNECTIONS = 16
REQUEST_TIMEOUT_S = 5.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class _Snapshot:
    spiffe_id: str | None = None
    x509_expiry: dt.datetime | None = None
    jwt_expiry: dt.datetime | None = None
    jwt_wanted: bool = False
    updated_at: dt.datetime | None = None
    rotations: int = 0
    notified: str = ""
    error: str | None = None
    failed: bool = False
    serial: int | None = None
    lifetime_s: float | None = None
    serial_changes: int = 0
    writes: int = 0
    signals: int = 0


class HelperState:
    """What the helper has done so far; written by the helper, read by the health server."""

    def __init__(self, jwt_wanted: bool = False) -> None:
        self._lock = threading.Lock()
        self._s = _Snapshot(jwt_wanted=jwt_wanted)

    def x509_written(self, spiffe_id: str, expiry: dt.datetime, rotated: bool,
                     notified: str, *, serial: int | None = None,
                     lifetime_s: float | None = None, wrote: bool = False,
                     signals: int = 0) -> None:
        """One X.509 update handled: ``wrote`` when files changed, ``signals`` delivered."""
        with self._lock:
            s = self._s
            s.rotations += int(rotated and s.x509_expiry is not None)  # the first is no rotation
            s.spiffe_id, s.x509_expiry, s.updated_at, s.error = spiffe_id, expiry, _now(), None
            if notified:
                s.notified = notified
            if serial is not None:
                s.serial_changes += int(s.serial is not None and serial != s.serial)
                s.serial = serial
            s.lifetime_s = lifetime_s if lifetime_s is not None else s.lifetime_s
            s.writes += int(wrote)
            s.signals += signals

    def jwt_written(self, earliest_expiry: dt.datetime) -> None:
        with self._lock:
            self._s.jwt_expiry = earliest_expiry

    def error(self, message: str, *, fatal: bool = False) -> None:
        with self._lock:
            self._s.error = message[:500]
            self._s.failed = self._s.failed or fatal

    def live(self) -> bool:
        with self._lock:
            return not self._s.failed

    def ready_x509(self) -> bool:
        """The X.509 files are written and their SVID has not expired."""
        with self._lock:
            return self._s.x509_expiry is not None and self._s.x509_expiry > _now()

    def ready(self) -> bool:
        x509_ok = self.ready_x509()
        with self._lock:
            s, now = self._s, _now()
            jwt_ok = not s.jwt_wanted or (s.jwt_expiry is not None and s.jwt_expiry > now)
            return x509_ok and jwt_ok and not s.failed

    def counts(self) -> HelperCounts:
        """What the metrics show, read under the lock."""
        with self._lock:
            s = self._s
            return HelperCounts(s.x509_expiry, s.lifetime_s, s.serial_changes, s.writes,
                                s.signals)  # fmt: skip

    @property
    def rotations(self) -> int:
        with self._lock:
            return self._s.rotations

    def as_dict(self) -> dict[str, Any]:
        live, ready = self.live(), self.ready()
        with self._lock:
            s = self._s

            def iso(t: dt.datetime | None) -> str | None:
                return t.isoformat() if t is not None else None

            return {
                "live": live, "ready": ready, "spiffe_id": s.spiffe_id,
                "x509_svid_expiry": iso(s.x509_expiry), "jwt_svid_expiry": iso(s.jwt_expiry),
                "updated_at": iso(s.updated_at), "rotations": s.rotations,
                "last_notification": s.notified, "error": s.error,
            }  # fmt: skip


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    server_version = "spire-fabric-helper"
    sys_version = ""

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/live":
            ok = state.live()
        elif self.path == "/ready":
            ok = state.ready()
        elif self.path == METRICS_PATH:
            self._send(200, self.server.metrics.get(), METRICS_CONTENT_TYPE)
            return
        else:
            self._answer(404, {"error": "not found; the paths are /live, /ready and /metrics"})
            return
        self._answer(200 if ok else 503, state.as_dict())

    def do_HEAD(self) -> None:
        self.do_GET()

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        self._send(status, (json.dumps(doc) + "\n").encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not news; nothing is logged per request."""


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: HelperState) -> None:
        self.state = state
        self.metrics = HelperMetrics(state.counts)
        self.active = 0
        self.refused_over_cap = 0
        self._lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            over = self.active >= MAX_CONNECTIONS
            if over:
                self.refused_over_cap += 1
            else:
                self.active += 1
        if over:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # A whole-connection deadline: the socket timeout alone restarts on every byte, so a
        # client trickling its request line would hold a slot for minutes.
        deadline = threading.Timer(REQUEST_TIMEOUT_S, _cut, (request,))
        deadline.daemon = True
        deadline.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            deadline.cancel()
            with self._lock:
                self.active -= 1


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class HealthServer:
    """The health endpoint on `address`, served from a background thread until `close()`."""

    def __init__(self, address: tuple[str, int], state: HelperState) -> None:
        self._server = _Server(address, state)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, daemon=True,
                                        name="helper-health")  # fmt: skip
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def refused_over_cap(self) -> int:
        return self._server.refused_over_cap

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
