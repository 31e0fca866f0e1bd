"""HTTP/1.1 with keep-alive on both sides, shared by the three examples.

Why not a framework: the point of the examples is to show where identity enters a plain
stdlib service (the ``ssl.SSLContext`` from ``spire_fabric.tls``), and ``http.server`` plus
``http.client`` already speak HTTP/1.1 with persistent connections once told to.

- :class:`JsonHandler`: a ``BaseHTTPRequestHandler`` that speaks HTTP/1.1 (every answer has
  a ``Content-Length``, so the connection stays open), reads JSON bodies with a size limit
  and turns a malformed body into a 400 with a JSON reason, never a stack trace.
- :class:`ConnectionPool`: a few ``http.client`` connections to one origin, reused across
  requests. A connection that the server closed while it sat idle is replaced and the
  request sent again, once (the server closes idle connections after a while; the request
  never reached its handler). Connections also retire after ``max_age`` seconds so a
  long-lived client picks up a rotated SVID on the server side in bounded time; with our
  TLS contexts each *new* connection presents and checks the current SVIDs.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["BadRequest", "ConnectionPool", "JsonHandler", "PlainHttpServer", "Response", "kv"]

MAX_BODY = 64 * 1024


def kv(**fields: object) -> str:
    """``key=value`` pairs for one log line (logfmt): values with spaces or quotes quoted."""
    out = []
    for key, value in fields.items():
        text = "-" if value is None else str(value)
        if not text or any(c in text for c in ' "=\\\n'):
            text = json.dumps(text)
        out.append(f"{key}={text}")
    return " ".join(out)


class BadRequest(Exception):
    """The request cannot be understood; the message goes back to the caller in a 400."""


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive JSON handler; subclasses implement ``do_GET`` / ``do_POST``."""

    protocol_version = "HTTP/1.1"
    # Seconds an idle keep-alive connection is kept (StreamRequestHandler applies it to
    # the socket). Longer than ConnectionPool.idle_timeout, so a pool never sends on a
    # connection the server is about to close.
    timeout = 120
    # Headers and body leave in one write (wfile is flushed after each request): two small
    # writes would meet Nagle's algorithm and the peer's delayed ACK, 40 ms per answer.
    wbufsize = 64 * 1024

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read_json(self) -> Any:
        """The request body as JSON; BadRequest with a reason a caller can act on."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise BadRequest("chunked bodies are not accepted; send Content-Length")
        raw_length = self.headers.get("Content-Length")
        try:
            length = int(raw_length) if raw_length is not None else 0
        except ValueError:
            raise BadRequest(f"bad Content-Length {raw_length!r}") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the unread body would be taken for a request
            raise BadRequest(f"body must be 0..{MAX_BODY} bytes, got {length}")
        data = self.rfile.read(length) if length else b""
        if not data:
            raise BadRequest("a JSON body is required")
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"body is not JSON: {e}") from None

    def discard_body(self) -> None:
        """Read and drop a body we do not want, so the next request on the connection
        starts where it should."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
        elif length:
            self.rfile.read(length)

    def reply(
        self,
        status: int,
        body: object,
        headers: Mapping[str, str] | None = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # each example logs one structured line per request itself

    def log_message(self, format: str, *args: Any) -> None:
        pass  # http.server's own stderr lines (timeouts, bad request lines) are noise here


class Response:
    """What a pooled request returns: status, headers and the whole body."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class _Pooled:
    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.created = time.monotonic()
        self.used = self.created
        self.requests = 0


class ConnectionPool:
    """Persistent connections to one ``https://`` (with ``context``) or ``http://`` origin.

    Thread-safe: a connection is used by one request at a time; at most ``size`` idle
    connections are kept. ``opened`` counts connections made (handshakes), for tests and
    benchmarks.
    """

    def __init__(
        self,
        base_url: str,
        context: ssl.SSLContext | None = None,
        *,
        size: int = 16,
        timeout: float = 10.0,
        idle_timeout: float = 60.0,
        max_age: float = 300.0,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"expected http(s)://HOST:PORT, got {base_url!r}")
        if url.scheme == "https" and context is None:
            raise ValueError("an https:// origin needs an SSL context")
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.context = context
        self.size = size
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self._idle: list[_Pooled] = []
        self._lock = threading.Lock()
        self.opened = 0

    def _new(self) -> _Pooled:
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=self.timeout
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()  # handshake (and the SPIFFE check) now, so errors say "connect"
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.opened += 1
        return _Pooled(conn)

    def _take(self) -> _Pooled | None:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                pooled = self._idle.pop()
                if now - pooled.used < self.idle_timeout and now - pooled.created < self.max_age:
                    return pooled
                pooled.conn.close()
        return None

    def _give(self, pooled: _Pooled) -> None:
        pooled.used = time.monotonic()
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(pooled)
                return
        pooled.conn.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request and read the whole answer. Raises OSError (incl. ssl errors)
        or http.client.HTTPException when no answer could be had."""
        all_headers = dict(headers or {})
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        pooled = self._take()
        reused = pooled is not None
        while True:
            if pooled is None:
                pooled = self._new()
            try:
                pooled.conn.request(method, self.prefix + path, body=body, headers=all_headers)
                answer = pooled.conn.getresponse()
                data = answer.read()
            except (ConnectionError, http.client.RemoteDisconnected, ssl.SSLEOFError) as e:
                pooled.conn.close()
                if not reused:
                    raise
                # The server closed this idle connection before our request reached it
                # (RemoteDisconnected: no status line at all). Once, on a new connection.
                del e
                pooled, reused = None, False
                continue
            except BaseException:
                pooled.conn.close()
                raise
            pooled.requests += 1
            if answer.will_close:
                pooled.conn.close()
            else:
                self._give(pooled)
            return Response(answer.status, answer.headers, data)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.conn.close()

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlainHttpServer:
    """Plain HTTP in a background thread: loopback health endpoints and the benchmark's
    no-identity baseline. Never the way to serve a SPIFFE workload to other machines."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler], address: tuple[str, int]):
        self._server = http.server.ThreadingHTTPServer(address, handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
