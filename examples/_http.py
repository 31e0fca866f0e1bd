"""HTTP/1.1 with keep-alive on both sides, shared by the three examples, built to face
hostile clients.

Why h11 and not ``http.server`` or uvicorn: the services face unauthenticated clients (the
gateway is the edge), so parsing must be strict and bounded *before* anyone is known.
``http.server`` parses up to 100 header lines of 64 KB each (6 MB per request) and accepts
``Content-Length: +45``; uvicorn enforces limits but cannot serve with our rotating
``ssl.SSLContext`` object (it builds its own from files) and its ASGI scope does not carry
the TLS peer certificate, which is how a handler learns the caller's SPIFFE ID. h11 is a
maintained, sans-IO HTTP/1.1 parser (uvicorn's own default): it refuses oversized heads,
conflicting lengths and malformed request lines, and leaves the socket to us, so it runs on
the threads of :class:`spire_fabric.tls.TlsThreadingServer` where ``self.request`` is the
verified TLS socket. What h11 does not do is here: deadlines, body limits, stricter framing
(no ``Transfer-Encoding`` at all), one answer per request whatever the handler does.

- :class:`JsonHandler`: one connection, many requests. Every request gets exactly one
  answer: a malformed head 400, an oversized head 431, a head that does not arrive within
  ``Limits.header_timeout`` 408, a method nobody implements 501, a handler exception 500.
  :meth:`JsonHandler.audit_rejected` lets a service log those in its own audit format.
- :class:`PlainHttpServer`: the same handlers over plain HTTP (loopback health endpoints,
  the benchmark's baseline), with the same connection cap and backlog.

The client side (``ConnectionPool``) lives in ``_pool.py`` and is re-exported here.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import h11

from ._pool import ConnectionPool, NoAnswer, Response

__all__ = [
    "BadRequest",
    "ConnectionPool",
    "Headers",
    "JsonHandler",
    "Limits",
    "NoAnswer",
    "PlainHttpServer",
    "Response",
    "kv",
]

MAX_BODY = 64 * 1024
MAX_LOGGED = 200  # characters of one logged value; the rest is counted, not written
# Methods we know of; anything else is 501 Not Implemented, these are 405 unless handled.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

_log = logging.getLogger("spire_fabric.examples.http")


def _loggable(text: str) -> str:
    """``text`` cut to MAX_LOGGED characters, with the cut said."""
    if len(text) <= MAX_LOGGED:
        return text
    return f"{text[:MAX_LOGGED]}...({len(text) - MAX_LOGGED} more)"


def kv(**fields: object) -> str:
    """``key=value`` pairs for one log line (logfmt).

    Values may come from unauthenticated clients, so each is cut to MAX_LOGGED characters
    and anything but printable ASCII (control characters like ESC or NUL, non-ASCII,
    quotes, spaces) makes it a JSON string with escapes: one request is one line, and
    nothing a client sends reaches a terminal raw.
    """
    out = []
    for key, value in fields.items():
        text = _loggable("-" if value is None else str(value))
        if not text or any(not ("!" <= c <= "~") or c in '"=\\' for c in text):
            text = json.dumps(text)  # ensure_ascii: \u001b, \u0000, \u00e9
        out.append(f"{key}={text}")
    return " ".join(out)


class BadRequest(Exception):
    """The request cannot be understood; the message goes back to the caller with
    ``status`` (400, or 408/413 for a body too slow or too large, which also close the
    connection)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one connection may cost before anyone knows who is on the other end.

    Slow clients (slowloris) cost a blocked thread each, bounded by the server's
    connection cap; these deadlines make each one short-lived. ``idle_timeout`` is
    longer than ``ConnectionPool.idle_timeout``, so our own pools close first.
    """

    max_header_bytes: int = 16 * 1024  # request line + headers; more is 431
    header_timeout: float = 10.0  # from the first byte of a request to its blank line
    idle_timeout: float = 15.0  # keep-alive: a connection with no request is closed
    body_timeout: float = 10.0  # for the whole body, once the head is in
    max_body: int = MAX_BODY
    # After an error answer that closes the connection, keep reading (and dropping) what the
    # client is still sending for up to this long, so that its kernel does not get a reset
    # that throws our answer away before it is read (what nginx calls a lingering close).
    linger: float = 2.0


class _Closed(Exception):
    """The peer went away or a deadline passed; the connection is done."""


class _Refused(Exception):
    """The base class answers this request itself (status, reason) and may close."""

    def __init__(self, status: int, reason: str, *, close: bool = True) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close


class Headers:
    """Request headers, case-insensitive, values decoded as Latin-1 (what HTTP allows).

    ``get`` returns the last value of a repeated header; h11 already refused conflicting
    Content-Lengths.
    """

    def __init__(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self._items = [(k.decode("ascii").lower(), v.decode("latin-1")) for k, v in items]
        self._map = dict(self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._map.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


class JsonHandler(socketserver.BaseRequestHandler):
    """HTTP/1.1 keep-alive JSON handler on h11; subclasses implement ``do_GET`` / ``do_POST``.

    The surface handlers use is the familiar one: ``command``, ``path`` (the request
    target, printable ASCII only), ``headers``, ``request`` (the socket; for TLS, the
    verified ``SSLSocket``), ``read_json`` / ``read_body`` / ``discard_body`` and ``reply``.
    """

    server_version = "example"  # the Server header: a name, never a library version
    limits = Limits()

    command: str
    path: str
    headers: Headers
    close_connection: bool

    def setup(self) -> None:
        self.connection: socket.socket = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes
        )
        self._replied = False
        self._linger = False
        self.command, self.path, self.headers = "-", "-", Headers(())

    # -- the connection loop ---------------------------------------------------------

    def handle(self) -> None:
        try:
            while self._one_request():
                self._h11.start_next_cycle()
        except _Closed:
            pass
        except h11.LocalProtocolError as e:  # our own misuse: say so once, then close
            _log.error("http: %s", e)
        if self._linger:
            self._drain()

    def _drain(self) -> None:
        """Read and drop input until the client stops sending (0.5 s quiet), closes, or
        ``limits.linger`` is over; constant memory, bounded time."""
        deadline = time.monotonic() + self.limits.linger
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.connection.settimeout(min(0.5, left))
            try:
                if not self.connection.recv(64 * 1024):
                    return
            except (OSError, ValueError):
                return

    def _recv(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.connection.settimeout(left)
        try:
            data = self.connection.recv(64 * 1024)
        except TimeoutError:
            raise
        except (OSError, ValueError):
            raise _Closed from None
        if not data:
            raise _Closed
        return data

    def _next_event(self, deadline: float) -> Any:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._h11.receive_data(self._recv(deadline))

    def _one_request(self) -> bool:
        """Read one request head, dispatch it; True to keep the connection open."""
        self._replied = False
        self.close_connection = False
        self.command, self.path, self.headers = "-", "-", Headers(())
        try:
            event, raw_head = self._read_head()
            self.command = event.method.decode("ascii", "replace")
            self.path = event.target.decode("ascii", "replace")
            self.headers = Headers(event.headers.raw_items())
            self._check_framing(event, raw_head)
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                if self.command in KNOWN_METHODS:
                    raise _Refused(405, f"method {self.command} is not allowed here", close=False)
                raise _Refused(501, "method not implemented", close=False)
            try:
                method()
            except _Refused:
                raise
            except BadRequest as e:  # a handler that lets it through still gets its status
                if self._replied:
                    return False
                raise _Refused(e.status, str(e), close=self.close_connection) from None
            except Exception as e:  # one answer per request, whatever the handler did
                _log.exception("http: handler failed on %s %s", self.command, _loggable(self.path))
                if self._replied:
                    return False
                raise _Refused(500, f"internal error ({type(e).__name__})") from None
        except _Refused as e:
            if self._replied:
                return False
            try:
                self.audit_rejected(e.status, e.reason)
            except Exception:  # a broken audit hook must not cost the client its answer
                _log.exception("http: audit_rejected failed")
            self.close_connection = self.close_connection or e.close
            error = {"error": http.client.responses.get(e.status, "error"), "reason": e.reason}
            self.reply(e.status, error, {"Allow": "GET, POST"} if e.status == 405 else None)
        if not self._replied:
            return False
        if self.close_connection and self._h11.their_state is not h11.DONE:
            self._linger = True  # the client may still be sending what we did not read
        return self._finish_body()

    def _read_head(self) -> tuple[h11.Request, bytes]:
        """The next request head, and the bytes it came in (for checks h11 does not make:
        it merges repeated identical Content-Lengths)."""
        deadline = time.monotonic() + self.limits.idle_timeout
        raw = bytearray(self._h11.trailing_data[0])  # pipelined bytes of the last cycle
        started = bool(raw)
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint if e.error_status_hint in (400, 431) else 400
                reason = (
                    f"request head over {self.limits.max_header_bytes} bytes"
                    if status == 431
                    else f"malformed request: {_loggable(str(e))}"
                )
                raise _Refused(status, reason) from None
            if event is h11.NEED_DATA:
                try:
                    data = self._recv(deadline)
                except TimeoutError:
                    if not started:
                        raise _Closed from None  # keep-alive idle: just close
                    raise _Refused(408, "the request head did not arrive in time") from None
                if not started:
                    started = True
                    deadline = time.monotonic() + self.limits.header_timeout
                if len(raw) <= self.limits.max_header_bytes:
                    raw += data
                self._h11.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise _Closed
            if not isinstance(event, h11.Request):
                raise _Closed
            return event, bytes(raw)

    def _check_framing(self, event: h11.Request, raw_head: bytes) -> None:
        size = (
            len(event.method)
            + len(event.target)
            + sum(len(k) + len(v) + 4 for k, v in event.headers.raw_items())
        )
        if size > self.limits.max_header_bytes:  # a complete head can arrive in one read
            raise _Refused(431, f"request head over {self.limits.max_header_bytes} bytes")
        if any(not 0x21 <= b <= 0x7E for b in event.target):
            raise _Refused(400, "the request target must be printable ASCII")
        names = [k.lower() for k, _ in event.headers.raw_items()]
        if b"transfer-encoding" in names:
            raise _Refused(400, "Transfer-Encoding is not accepted; send Content-Length")
        lengths = [
            value
            for name, _, value in (
                line.partition(b":") for line in raw_head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            )
            if name.strip().lower() == b"content-length"
        ]
        # h11 refuses conflicting lengths and merges equal ones ("5, 5" or two lines of 5);
        # a repeat is allowed by RFC 9110 but only ever sent by a confused or hostile client
        if len(lengths) > 1 or any(b"," in v for v in lengths):
            raise _Refused(400, "more than one Content-Length")
        if self.content_length() > self.limits.max_body:
            raise _Refused(413, f"body over {self.limits.max_body} bytes")

    def content_length(self) -> int:
        """The declared body length (h11 checked it is digits and unique)."""
        return int(self.headers.get("Content-Length") or 0)

    def _finish_body(self) -> bool:
        """After the answer: drain an unread body (bounded) so the next request starts
        where it should; True if the connection can carry another request."""
        if self.close_connection or self._h11.our_state is not h11.DONE:
            return False
        if self._h11.their_state is h11.SEND_BODY:
            try:
                self._body_bytes()
            except BadRequest:
                return False
        return self._h11.their_state is h11.DONE and self._h11.our_state is h11.DONE

    # -- what handlers call ----------------------------------------------------------

    def _body_bytes(self) -> bytes:
        deadline = time.monotonic() + self.limits.body_timeout
        if self._h11.they_are_waiting_for_100_continue:  # curl does for bodies over 1 KB
            try:
                go_on = h11.InformationalResponse(status_code=100, headers=[])
                self.connection.sendall(self._h11.send(go_on))
            except OSError:
                self.close_connection = True
                raise BadRequest("the connection closed before the body") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = self._next_event(deadline)
            except TimeoutError:
                self.close_connection = True
                raise BadRequest("the request body did not arrive in time", 408) from None
            except _Closed:
                self.close_connection = True
                raise BadRequest("the connection closed inside the body") from None
            except h11.RemoteProtocolError as e:
                self.close_connection = True
                raise BadRequest(f"malformed body: {_loggable(str(e))}") from None
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.limits.max_body:
                    self.close_connection = True
                    raise BadRequest(f"body over {self.limits.max_body} bytes", 413)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                self.close_connection = True
                raise BadRequest("unexpected end of the body")

    def read_body(self) -> bytes:
        """The whole request body (bounded by ``limits.max_body`` and ``body_timeout``)."""
        if self._h11.their_state is not h11.SEND_BODY:
            return b""
        return self._body_bytes()

    def read_json(self) -> Any:
        """The request body as JSON; BadRequest with a reason a caller can act on."""
        data = self.read_body()
        if not data:
            raise BadRequest("a JSON body is required")
        try:
            return json.loads(data)
        except RecursionError:
            raise BadRequest("body is not JSON we accept: nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"body is not JSON: {_loggable(str(e))}") from None

    def discard_body(self) -> None:
        """Kept for handlers that refuse a request before reading its body: the body is
        drained (bounded) after the answer, or the connection is closed."""

    def reply(
        self,
        status: int,
        body: object,
        headers: Mapping[str, str] | None = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Send the one answer to this request (headers and body in one write: two small
        writes would meet Nagle's algorithm and the peer's delayed ACK, 40 ms each)."""
        if self._replied:
            raise RuntimeError("a request gets one answer")
        self._replied = True
        data = raw if raw is not None else json.dumps(body).encode() + b"\n"
        fields = [
            ("Server", self.server_version),
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
        ]
        fields += list((headers or {}).items())
        if self._h11.they_are_waiting_for_100_continue:
            # answered before the body was asked for: whether the client now sends it or not
            # is its choice, so the next bytes cannot be trusted to be a request
            self.close_connection = True
        if self.close_connection:
            fields.append(("Connection", "close"))
        try:
            reason = http.client.responses.get(status, "").encode()
            out = self._h11.send(h11.Response(status_code=status, headers=fields, reason=reason))
            if self.command != "HEAD":
                out += self._h11.send(h11.Data(data=data))
            out += self._h11.send(h11.EndOfMessage())
            self.connection.settimeout(self.limits.body_timeout)
            self.connection.sendall(out)
        except (OSError, ValueError):
            self.close_connection = True
        if self._h11.our_state is h11.MUST_CLOSE:
            self.close_connection = True

    def audit_rejected(self, status: int, reason: str) -> None:
        """Called for every answer the base class gives itself (400, 405, 408, 413, 431,
        500, 501), before sending it; ``command`` / ``path`` may be ``"-"``. Services log
        it in their audit format."""


class _CappedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[JsonHandler], cap: int) -> None:
        self.cap = cap
        self.active = 0
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            over = self.active >= self.cap
            if not over:
                self.active += 1
        if over:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self.active -= 1


class PlainHttpServer:
    """Plain HTTP in a background thread: loopback health endpoints and the benchmark's
    no-identity baseline. Never the way to serve a SPIFFE workload to other machines.
    The same limits as the TLS servers: a connection cap and a backlog of 128."""

    def __init__(
        self, handler: type[JsonHandler], address: tuple[str, int], max_connections: int = 512
    ) -> None:
        self._server = _CappedServer(address, handler, max_connections)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        ).start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
