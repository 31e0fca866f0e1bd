"""`served_server_svid`: the chain a SPIRE server presents, read with pyOpenSSL (the stdlib
gives the leaf only), verified against the bundle and as the server's own ID. Here a
loopback TLS server with an in-memory CA stands in; against real SPIRE it is proven by
tests/e2e/test_rotate_root.py (each server's served chain after a root rotation)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from spire_fabric.identity import X509Svid, X509SvidError
from spire_fabric.runtime._served import served_server_svid
from spire_fabric.testing.pki import make_ca, make_svid
from spire_fabric.tls._context import load_svid

TD = "example.org"


@contextmanager
def _serving(svid: X509Svid) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_svid(context, svid)
    context.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_the_served_chain_is_read_and_checked_against_the_bundle_and_the_server_id() -> None:
    ca, other = make_ca(TD), make_ca(TD, "other")
    server = make_svid(ca, f"spiffe://{TD}/spire/server")
    with _serving(server) as port:
        chain = served_server_svid("127.0.0.1", port, ca.bundle(TD))
        assert chain[0] == server.leaf
        with pytest.raises(X509SvidError):  # a bundle it does not chain to
            served_server_svid("127.0.0.1", port, other.bundle(TD))


def test_a_peer_that_is_not_the_spire_server_is_refused() -> None:
    ca = make_ca(TD)
    refused = r"presents spiffe://example\.org/workload, not the SPIRE server's ID"
    with _serving(make_svid(ca, f"spiffe://{TD}/workload")) as port, \
            pytest.raises(ValueError, match=refused):  # fmt: skip
        served_server_svid("127.0.0.1", port, ca.bundle(TD))
