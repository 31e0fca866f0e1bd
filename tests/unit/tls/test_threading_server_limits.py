"""TlsThreadingServer under hostile clients: slow connections, a connection cap, a handshake
flood (static sources over real loopback sockets; no SPIRE needed)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from spire_fabric.examples._http import JsonHandler, Limits

from spire_fabric.tls import (
    MtlsServer,
    authorize_any,
    authorize_id,
    serve_mtls_threaded,
    tls_client_context,
)

from .conftest import SERVER_ID, World


class Hello(JsonHandler):
    server_version = "hello"
    limits = Limits(header_timeout=4.0, idle_timeout=30.0)

    def do_GET(self) -> None:
        self.reply(200, {"hello": "world"})


def _serve(world: World, **kw: object) -> MtlsServer:
    return serve_mtls_threaded(
        Hello, world.server_svid, world.bundles, authorize_any(), client_cert="optional", **kw
    )  # type: ignore[arg-type]


@pytest.fixture
def served(world: World) -> Iterator[MtlsServer]:
    server = _serve(world)
    yield server
    server.close()


def _client_context(world: World):
    return tls_client_context(world.bundles, authorize_id(SERVER_ID))


def test_200_slow_connections_do_not_stop_a_legitimate_client(world: World, served) -> None:
    context = _client_context(world)
    host, port = served.address
    slow = []
    try:
        for _ in range(200):  # handshaken, silent: the idle timeout (30 s) applies
            slow.append(context.wrap_socket(socket.create_connection((host, port), timeout=10)))
        for sock in slow:  # now all start a head at once, and then only trickle
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        began = time.monotonic()
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.5):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X: 1\r\n")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        waits = []
        while time.monotonic() < began + 2.0:
            started = time.monotonic()
            conn = http.client.HTTPSConnection(host, port, context=context, timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
            conn.close()
            waits.append(time.monotonic() - started)
            time.sleep(0.05)
        assert served.server.active_connections >= 200  # the slow ones are still held
        assert len(waits) >= 10 and max(waits) < 1.0, waits
        # ... but only until the header deadline, however steadily they trickle
        time.sleep(max(0.0, began + 5.0 - time.monotonic()))
        stop.set()
        trickler.join(5)
        timed_out = 0
        for sock in slow:
            sock.settimeout(2)
            with contextlib.suppress(OSError):
                timed_out += sock.recv(100).startswith(b"HTTP/1.1 408 ")
        assert timed_out == 200
    finally:
        for sock in slow:
            sock.close()


def test_connections_over_the_cap_are_closed_before_the_handshake(world: World) -> None:
    server = _serve(world, max_connections=5)
    context = _client_context(world)
    held = []
    try:
        for _ in range(5):
            held.append(context.wrap_socket(socket.create_connection(server.address, timeout=5)))
        with pytest.raises(OSError):  # closed at once: the handshake cannot complete
            context.wrap_socket(socket.create_connection(server.address, timeout=5))
        assert server.server.refused_over_cap >= 1
        for sock in held:
            sock.close()
        held.clear()
        time.sleep(0.3)
        conn = http.client.HTTPSConnection(*server.address, context=context, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        for sock in held:
            sock.close()
        server.close()


def test_rejected_keeps_only_the_latest_reasons(served) -> None:
    for _ in range(150):  # not TLS at all: each is a refused handshake
        with socket.create_connection(served.address, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(OSError):
                sock.recv(100)
    deadline = time.monotonic() + 5
    while served.server.active_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(served.rejected) == served.server.REJECTED_KEPT == 100


def test_the_listen_backlog_is_at_least_128(served) -> None:
    assert served.server.request_queue_size >= 128
