"""Persistent client connections to one origin, shared by the examples that call others.

A few ``http.client`` connections, reused across requests. A pooled connection the server
has already closed is noticed before sending (it is readable); a request that failed on a
reused connection is sent again only if its method is idempotent, so a POST that did reach
the server is never replayed. Connections retire after ``max_age`` seconds so a long-lived
client picks up a rotated SVID on the server side in bounded time; with our TLS contexts
each *new* connection presents and checks the current SVIDs.

A connection that could not be opened at all (the name did not resolve, the address
refused) carried no request, so it is tried once more after ``connect_retry`` seconds
whatever the method, as nginx's ``proxy_next_upstream error`` does: a DNS server or a
Service endpoint that is being replaced costs the caller a short wait, not a failed request.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["IDEMPOTENT", "ConnectionPool", "NoAnswer", "Response"]

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class Response:
    """What a pooled request returns: status, headers and the whole body."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class NoAnswer(ConnectionError):
    """The request was sent (it may have been processed) but no answer came back; a
    non-idempotent request is not sent again."""


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True if an idle pooled connection is readable: the server closed it (or sent
    something unasked), so it must not carry a request."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


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
        idle_timeout: float = 10.0,
        max_age: float = 300.0,
        connect_retry: float = 0.5,
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
        self.connect_retry = connect_retry
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

    def _open(self) -> _Pooled:
        try:
            return self._new()
        except (socket.gaierror, ConnectionRefusedError):
            # nothing was sent: safe to try again for any method; a second failure is the
            # caller's (whose error names it)
            time.sleep(self.connect_retry)
        return self._new()

    def _take(self) -> _Pooled | None:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                pooled = self._idle.pop()
                idle, age = now - pooled.used, now - pooled.created
                if idle < self.idle_timeout and age < self.max_age and not _dropped(pooled.conn):
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
        """Send one request and read the whole answer. Raises OSError (incl. ssl errors,
        ``socket.gaierror`` for a name that does not resolve) or http.client.HTTPException
        when no answer could be had: :class:`NoAnswer` if the request was sent and the
        connection then broke.

        A request that fails on a reused connection is sent once more on a new one only if
        ``method`` is idempotent: the server may have closed the connection just as the
        request went out (never processed), but it may also have processed it and died
        before answering, and a POST must not happen twice."""
        all_headers = dict(headers or {})
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        pooled = self._take()
        reused = pooled is not None
        while True:
            if pooled is None:
                pooled = self._open()
            try:
                pooled.conn.request(method, self.prefix + path, body=body, headers=all_headers)
                answer = pooled.conn.getresponse()
                data = answer.read()
            except (ConnectionError, http.client.RemoteDisconnected, ssl.SSLEOFError) as e:
                pooled.conn.close()
                if not reused or method.upper() not in IDEMPOTENT:
                    raise NoAnswer(f"{method} {path}: the connection broke without an answer "
                                   f"({type(e).__name__}: {e})") from e  # fmt: skip
                # The server closed this idle connection as our request went out
                # (RemoteDisconnected: no status line at all). Once, on a new connection.
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
