"""The examples' HTTP server core against hostile input, on real loopback sockets.

Plain HTTP here (the parser and the limits are the same code under TLS; the integration
tests repeat the important ones through the real gateway with real SPIRE).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from spire_fabric.examples._http import (
    ConnectionPool,
    JsonHandler,
    Limits,
    NoAnswer,
    PlainHttpServer,
    kv,
)

FAST = Limits(header_timeout=0.6, idle_timeout=0.6, body_timeout=0.6)


@dataclass
class Seen:
    requests: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)


def _server(seen: Seen, limits: Limits = FAST, cap: int = 64) -> PlainHttpServer:
    class Echo(JsonHandler):
        server_version = "echo"

        def do_GET(self) -> None:
            seen.requests.append((self.command, self.path))
            self.reply(200, {"path": self.path})

        def do_POST(self) -> None:
            seen.requests.append((self.command, self.path))
            self.reply(201, {"got": self.read_json()})

        def audit_rejected(self, status: int, reason: str) -> None:
            seen.rejected.append((status, self.command, reason))

    Echo.limits = limits
    return PlainHttpServer(Echo, ("127.0.0.1", 0), cap)


@pytest.fixture
def served() -> Iterator[tuple[PlainHttpServer, Seen]]:
    seen = Seen()
    server = _server(seen)
    yield server, seen
    server.close()


def _address(server: PlainHttpServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer off ``sock``: status, headers (lower-case), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer; got {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _exchange(server: PlainHttpServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(_address(server), timeout=5) as sock:
        # Send from a thread: the server may answer (and close) before a big request is in.
        sender = threading.Thread(target=_send_quietly, args=(sock, raw), daemon=True)
        sender.start()
        answer = _read_answer(sock)
        sender.join(5)
        return answer


def _send_quietly(sock: socket.socket, raw: bytes) -> None:
    # the server may answer and close before taking it all: that is the point
    with contextlib.suppress(OSError):
        sock.sendall(raw)


def test_a_6_mb_header_block_gets_431_without_being_read(served) -> None:
    server, seen = served
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 63_000) for i in range(97))
    status, answer_headers, body = _exchange(
        server, b"GET /records HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    )
    assert status == 431
    assert answer_headers["connection"] == "close"
    assert "request head over 16384 bytes" in json.loads(body)["reason"]
    assert seen.requests == [] and seen.rejected[0][0] == 431


def test_a_complete_but_too_large_head_in_one_read_gets_431(served) -> None:
    server, _ = served
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n"
    assert _exchange(server, raw)[0] == 431


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 2\r\nContent-Length: 3\r\n",  # conflicting: h11 refuses
        b"Content-Length: 2\r\nContent-Length: 2\r\n",  # identical: we refuse too
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: +2\r\n",
        b"Content-Length: 0_2\r\n",
        b"Content-Length: -2\r\n",
    ],
)
def test_ambiguous_or_malformed_framing_gets_400(served, framing: bytes) -> None:
    server, seen = served
    raw = b"POST /x HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n{}"
    status, headers, body = _exchange(server, raw)
    assert status == 400, body
    assert headers["connection"] == "close"
    assert seen.requests == []


@pytest.mark.parametrize(
    "target", ["/records/é".encode(), b"/records?q=\xff", b"/a\x1bb", b"/records/\x00"]
)
def test_a_non_ascii_or_control_target_gets_400(served, target: bytes) -> None:
    server, seen = served
    status, _, _ = _exchange(server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 400
    assert seen.requests == [] and seen.rejected[0][0] == 400


def test_unsupported_methods_get_a_plain_json_answer_and_the_audit_hook(served) -> None:
    server, seen = served
    status, headers, body = _exchange(server, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "Not Implemented"
    status, headers, body = _exchange(server, b"DELETE /records/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 405 and headers["allow"] == "GET, POST"
    assert [(s, m) for s, m, _ in seen.rejected] == [(501, "BREW"), (405, "DELETE")]


def test_the_server_header_names_no_library_or_python_version(served) -> None:
    server, _ = served
    status, headers, _ = _exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and headers["server"] == "echo"


def test_a_deeply_nested_or_oversized_body_gets_a_clear_status(served) -> None:
    server, _ = served
    deep = b"[" * 30_000
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(deep), deep)
    status, _, body = _exchange(server, raw)
    assert status == 400 and "nested too deeply" in json.loads(body)["reason"]
    big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"
    assert _exchange(server, big)[0] == 413


def test_a_head_that_trickles_in_gets_408_at_the_header_deadline(served) -> None:
    server, seen = served
    with socket.create_connection(_address(server), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(10):  # one header line every 0.2 s: each read is quick, the head is not
            if select.select([sock], [], [], 0.2)[0]:
                break  # answered
            sock.sendall(b"X-Slow: 1\r\n")
        status, _, _ = _read_answer(sock)
        assert status == 408
        assert time.monotonic() - started < 1.5  # header_timeout 0.6 s, not 2 s of trickle
    assert seen.rejected[-1][0] == 408


def test_an_idle_keep_alive_connection_is_closed(served) -> None:
    server, _ = served
    with socket.create_connection(_address(server), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(sock)[0] == 200
        started = time.monotonic()
        assert sock.recv(1) == b""  # the server closed it
        assert 0.4 < time.monotonic() - started < 2.0


def test_keep_alive_carries_several_requests_and_drains_unread_bodies(served) -> None:
    server, seen = served
    with socket.create_connection(_address(server), timeout=5) as sock:
        for i in range(3):
            sock.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert _read_answer(sock)[0] == 200
        # a refused request with a body the handler never reads: drained, connection reused
        sock.sendall(b"PATCH / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert _read_answer(sock)[0] == 405
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(sock)[0] == 200
    assert seen.requests[-1] == ("GET", "/after")


def test_connections_over_the_cap_are_refused_and_the_others_keep_working() -> None:
    seen = Seen()
    server = _server(seen, Limits(idle_timeout=10), cap=3)
    try:
        held = [socket.create_connection(_address(server), timeout=5) for _ in range(3)]
        time.sleep(0.3)
        with socket.create_connection(_address(server), timeout=5) as extra:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises((ConnectionError, OSError)):
                _read_answer(extra)
        held[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(held[0])[0] == 200
        for sock in held:
            sock.close()
        time.sleep(0.3)
        assert _exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
    finally:
        server.close()


def test_the_listen_backlog_takes_a_burst() -> None:
    seen = Seen()
    server = _server(seen)
    try:
        assert server._server.request_queue_size >= 128
    finally:
        server.close()


class _OneShot:
    """A server that answers the first request on a connection, then reads the second and
    closes without answering: the request reached it, its answer never left."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            for n in range(2):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.requests.append(data.split(b"\r\n", 1)[0])
                if n == 0:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                else:
                    time.sleep(0.05)
                    return

    def close(self) -> None:
        self.listener.close()


def test_a_post_that_reached_the_server_is_not_sent_again() -> None:
    upstream = _OneShot()
    try:
        with ConnectionPool(upstream.url) as pool:
            assert pool.request("GET", "/first").status == 200
            with pytest.raises(NoAnswer):
                pool.request("POST", "/records", b"{}")
        assert [r.split()[0] for r in upstream.requests] == [b"GET", b"POST"]
    finally:
        upstream.close()


def test_an_idempotent_request_is_retried_once_on_a_new_connection() -> None:
    upstream = _OneShot()
    try:
        with ConnectionPool(upstream.url) as pool:
            assert pool.request("GET", "/first").status == 200
            assert pool.request("GET", "/second").status == 200
        assert upstream.requests == [
            b"GET /first HTTP/1.1",
            b"GET /second HTTP/1.1",  # reached the server, no answer ...
            b"GET /second HTTP/1.1",  # ... so sent again, on a new connection
        ]
    finally:
        upstream.close()


def test_a_pooled_connection_the_server_closed_is_not_used(served) -> None:
    server, seen = served  # idle_timeout 0.6 s on the server, 10 s in the pool
    with ConnectionPool(server.url) as pool:
        assert pool.request("POST", "/a", b"{}").status == 201
        time.sleep(1.0)  # the server has closed the idle connection by now
        assert pool.request("POST", "/b", b"{}").status == 201  # not a NoAnswer
        assert pool.opened == 2
    assert seen.requests == [("POST", "/a"), ("POST", "/b")]


def test_a_connection_refused_is_opened_once_more_and_the_post_goes_through() -> None:
    # bound, not yet listening: connects are refused (RST) until listen() below
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    got: list[bytes] = []

    def serve_later() -> None:
        time.sleep(0.1)
        sock.listen()
        conn, _ = sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n{}" not in data:
                data += conn.recv(65536)
            got.append(data.split(b"\r\n", 1)[0])
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")

    server = threading.Thread(target=serve_later, daemon=True)
    server.start()
    try:
        with ConnectionPool(f"http://127.0.0.1:{port}", connect_retry=0.5) as pool:
            assert pool.request("POST", "/records", b"{}").status == 201
            assert pool.opened == 1
        assert got == [b"POST /records HTTP/1.1"]  # once: nothing was sent by the refused try
    finally:
        server.join(5)
        sock.close()


def test_a_name_that_does_not_resolve_is_tried_twice_then_raised() -> None:
    with ConnectionPool("http://does-not-resolve.invalid:80", connect_retry=0.3) as pool:
        started = time.monotonic()
        with pytest.raises(socket.gaierror):
            pool.request("GET", "/records")
        assert time.monotonic() - started >= 0.3  # the second try came after the pause
        assert pool.opened == 0


def test_a_refusal_that_lasts_is_raised_after_the_second_try() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # never listens
    try:
        port = sock.getsockname()[1]
        with ConnectionPool(f"http://127.0.0.1:{port}", connect_retry=0.2) as pool:
            started = time.monotonic()
            with pytest.raises(ConnectionRefusedError):
                pool.request("POST", "/records", b"{}")
            assert 0.2 <= time.monotonic() - started < 2.0
    finally:
        sock.close()


def test_logged_fields_are_cut_and_escaped() -> None:
    line = kv(path="/" + "a" * 65_000, agent="\x1b[31mred\x00", plain="ok", name="é")
    assert len(line) < 400
    assert "...(64801 more)" in line
    assert "\x1b" not in line and "\x00" not in line and "é" not in line
    assert r"\u001b[31mred\u0000" in line and r"\u00e9" in line
    assert "plain=ok" in line
    assert "\n" not in kv(x="a\nb")


def test_a_client_that_expects_100_continue_gets_it_before_sending_the_body(served) -> None:
    server, _ = served
    with socket.create_connection(_address(server), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"{}")
        assert _read_answer(sock)[0] == 201


def test_an_answer_before_100_continue_closes_the_connection(served) -> None:
    server, seen = served
    with socket.create_connection(_address(server), timeout=5) as sock:
        # refused before the body is wanted; the body that may follow must not be parsed
        # as the next request
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n"
                     b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        status, headers, _ = _read_answer(sock)
        assert (status, headers["connection"]) == (405, "close")
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        # closed, nothing answered (a reset is also a close: data came after it)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""
    assert ("GET", "/smuggled") not in seen.requests
