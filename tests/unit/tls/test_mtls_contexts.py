"""Mutual TLS with static sources over real loopback sockets (no SPIRE needed)."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import socket
import ssl
import threading
import urllib.error

import pytest

from spire_fabric.identity import BundleSet, SpiffeId
from spire_fabric.testing.pki import make_ca, make_svid
from spire_fabric.tls import (
    PeerRejectedError,
    authorize_any,
    authorize_id,
    connect_mtls,
    mtls_client_context,
    mtls_server_context,
    mtls_urlopen,
    peer_chain,
    peer_spiffe_id,
    serve_mtls_threaded,
    start_mtls_server,
    tls_client_context,
    tls_server_context,
    verify_peer,
)

from .conftest import CLIENT_ID, SERVER_ID, World


class WhoAmI(http.server.BaseHTTPRequestHandler):
    """Answers with the verified client ID, proving the handler saw the checked peer."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = str(peer_spiffe_id(self.request)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(world: World, authorizer=None):
    return serve_mtls_threaded(
        WhoAmI, world.server_svid, world.bundles, authorizer or authorize_id(CLIENT_ID)
    )


def _client(world: World, svid=None, authorizer=None):
    return mtls_client_context(
        svid or world.client_svid, world.bundles, authorizer or authorize_id(SERVER_ID)
    )


def _get(server, context) -> tuple[str, int]:
    """One HTTPS request; returns the body and the serial of the server leaf on the wire."""
    conn = http.client.HTTPSConnection(*server.address, context=context, timeout=5)
    try:
        conn.request("GET", "/")
        body = conn.getresponse().read().decode()
        return body, peer_chain(conn.sock)[0].serial_number
    finally:
        conn.close()


def test_client_and_server_authorize_each_other_by_exact_id(world: World) -> None:
    with _serve(world) as server:
        sock, peer = connect_mtls(*server.address, _client(world))
        sock.close()
        body, _ = _get(server, _client(world))
    assert peer == SpiffeId.parse(SERVER_ID)
    assert body == CLIENT_ID


def test_unauthorized_client_is_refused_by_the_server_before_the_handler_runs(
    world: World,
) -> None:
    other = make_svid(world.ca_b, "spiffe://td-b.test/intruder")
    with _serve(world) as server:
        with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException)):
            _get(server, _client(world, svid=other))
        assert any("spiffe://td-b.test/intruder is not authorized" in r for r in server.rejected)


def test_client_refuses_a_server_with_an_unexpected_id(world: World) -> None:
    with _serve(world) as server:
        context = _client(world, authorizer=authorize_id("spiffe://td-a.test/someone-else"))
        with pytest.raises(PeerRejectedError, match="is not authorized") as info:
            connect_mtls(*server.address, context)
    assert info.value.peer_id == SpiffeId.parse(SERVER_ID)


def test_forged_peer_with_td_a_id_signed_by_td_b_ca_is_refused_though_b_is_trusted(
    world: World,
) -> None:
    # B's CA is in the trusted pool, so OpenSSL's own pool check lets the handshake finish;
    # only the per-trust-domain check can tell that B may not vouch for a td-a.test ID.
    forged = make_svid(world.ca_b, "spiffe://td-a.test/admin")
    with _serve(world, authorizer=authorize_any()) as server:
        with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException)):
            _get(server, _client(world, svid=forged))
        assert any("could not verify leaf certificate" in r for r in server.rejected)


def test_forged_server_with_td_a_id_signed_by_td_b_ca_is_refused_by_the_client(
    world: World,
) -> None:
    world.server_svid.svid = make_svid(world.ca_b, SERVER_ID)
    with (
        _serve(world) as server,
        pytest.raises(PeerRejectedError, match="could not verify leaf certificate"),
    ):
        connect_mtls(*server.address, _client(world))


def test_new_handshakes_present_the_rotated_svid_and_open_connections_keep_working(
    world: World,
) -> None:
    with _serve(world) as server:
        client = _client(world)
        conn = http.client.HTTPSConnection(*server.address, context=client, timeout=5)
        conn.request("GET", "/")
        conn.getresponse().read()
        old_serial = world.server_svid.svid.leaf.serial_number
        assert peer_chain(conn.sock)[0].serial_number == old_serial

        world.server_svid.svid = make_svid(world.ca_a, SERVER_ID)
        world.client_svid.svid = make_svid(world.ca_b, CLIENT_ID)
        _, new_serial = _get(server, client)

        conn.request("GET", "/")  # the connection opened before rotation still works
        assert conn.getresponse().read().decode() == CLIENT_ID
        conn.close()
    assert new_serial == world.server_svid.svid.leaf.serial_number != old_serial
    assert server.context.builds == 2


def test_a_removed_trust_domain_is_refused_by_new_handshakes(world: World) -> None:
    with _serve(world, authorizer=authorize_any()) as server:
        assert _get(server, _client(world))[0] == CLIENT_ID
        world.bundles.remove(world.client_svid.svid.spiffe_id.trust_domain)
        with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException)):
            _get(server, _client(world))


def test_handshake_without_sni_still_gets_the_current_svid(world: World) -> None:
    with _serve(world) as server:
        world.server_svid.svid = make_svid(world.ca_a, SERVER_ID)
        raw = socket.create_connection(server.address, timeout=5)
        conn = _client(world).wrap_socket(raw, server_hostname=None)
        serial = peer_chain(conn)[0].serial_number
        conn.close()
    assert serial == world.server_svid.svid.leaf.serial_number


def test_concurrent_handshakes_during_rapid_rotation_all_succeed(world: World) -> None:
    failures: list[BaseException] = []
    done = threading.Event()

    def rotate() -> None:
        while not done.is_set():
            world.server_svid.svid = make_svid(world.ca_a, SERVER_ID)
            world.client_svid.svid = make_svid(world.ca_b, CLIENT_ID)

    def call(client) -> None:
        for _ in range(15):
            try:
                assert _get(server, client)[0] == CLIENT_ID
            except BaseException as e:
                failures.append(e)

    with _serve(world) as server:
        rotator = threading.Thread(target=rotate)
        rotator.start()
        clients = [threading.Thread(target=call, args=(_client(world),)) for _ in range(4)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        done.set()
        rotator.join(10)
    assert failures == []
    assert server.context.builds > 2


def test_mtls_urlopen_refuses_an_unauthorized_server(world: World) -> None:
    with _serve(world) as server:
        assert mtls_urlopen(server.url + "/", _client(world)).read().decode() == CLIENT_ID
        wrong = _client(world, authorizer=authorize_id("spiffe://td-a.test/other"))
        with pytest.raises(urllib.error.URLError, match="is not authorized"):
            mtls_urlopen(server.url + "/", wrong)


def test_alpn_set_by_a_framework_on_the_front_context_is_negotiated(world: World) -> None:
    server_ctx = mtls_server_context(world.server_svid, world.bundles, authorize_any())
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    client = _client(world)
    client.set_alpn_protocols(["http/1.1"])
    with serve_mtls_threaded(WhoAmI, None, None, None, context=server_ctx) as server:  # type: ignore[arg-type]
        sock, _ = connect_mtls(*server.address, client)
        assert sock.selected_alpn_protocol() == "http/1.1"
        sock.close()


def test_tls_server_context_serves_a_client_without_an_svid(world: World) -> None:
    server_ctx = tls_server_context(world.server_svid)
    with serve_mtls_threaded(WhoAmIAnonymous, None, None, None, context=server_ctx) as server:  # type: ignore[arg-type]
        client = tls_client_context(world.bundles, authorize_id(SERVER_ID))
        sock, peer = connect_mtls(*server.address, client)
        sock.sendall(b"hi")
        assert sock.recv(2) == b"hi"
        sock.close()
    assert peer == SpiffeId.parse(SERVER_ID)


class WhoAmIAnonymous(http.server.BaseHTTPRequestHandler):
    def handle(self) -> None:
        self.request.sendall(self.request.recv(2))


def test_verify_peer_checks_a_connection_made_by_a_plain_stdlib_context(world: World) -> None:
    """What a framework that only takes an SSLContext does: its own context, our check."""
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain.check_hostname = False
    plain.verify_mode = ssl.CERT_NONE  # trust nothing in OpenSSL; verify_peer decides
    svid = world.client_svid.svid
    plain.load_cert_chain(*_pem_files(svid))
    with _serve(world, authorizer=authorize_any()) as server:
        raw = socket.create_connection(server.address, timeout=5)
        sock = plain.wrap_socket(raw)
        assert not hasattr(sock, "spiffe_peer_id")
        with pytest.raises(LookupError, match="no verified SPIFFE peer"):
            peer_spiffe_id(sock)
        assert verify_peer(sock, world.bundles, authorize_id(SERVER_ID)) == SpiffeId.parse(
            SERVER_ID
        )
        with pytest.raises(PeerRejectedError, match="not authorized"):
            verify_peer(sock, world.bundles, authorize_id(CLIENT_ID))
        empty = BundleSet([world.ca_b.bundle("td-b.test")])
        with pytest.raises(PeerRejectedError, match=r"no X\.509 bundle found"):
            verify_peer(sock, empty, authorize_any())
        sock.close()


def _pem_files(svid) -> tuple[str, str]:
    import tempfile

    directory = tempfile.mkdtemp()
    cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
    with open(cert, "wb") as f:
        f.write(svid.cert_chain_pem())
    with open(key, "wb") as f:
        f.write(svid.private_key_pem())
    return cert, key


async def test_asyncio_server_and_client_check_peers_inside_the_handshake(world: World) -> None:
    async def echo(reader, writer, peer: SpiffeId) -> None:
        writer.write(str(peer).encode() + b"\n")
        await writer.drain()

    server = await start_mtls_server(echo, world.server_svid, world.bundles, authorize_any())
    host, port = server.sockets[0].getsockname()[:2]
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=_client(world))
        ssl_object = writer.get_extra_info("ssl_object")
        assert peer_spiffe_id(ssl_object) == SpiffeId.parse(SERVER_ID)
        assert peer_chain(ssl_object)[0] == world.server_svid.svid.leaf
        assert (await reader.readline()).decode().strip() == CLIENT_ID
        writer.close()

        wrong = _client(world, authorizer=authorize_id("spiffe://td-a.test/other"))
        with pytest.raises(PeerRejectedError, match="not authorized"):
            await asyncio.open_connection(host, port, ssl=wrong)
    finally:
        server.close()
        await server.wait_closed()


def test_forged_ca_cannot_be_hidden_by_adding_it_to_the_victims_bundle_view() -> None:
    """A source that returns B's bundle when asked for A is refused, not trusted."""
    ca_b = make_ca("td-b.test")

    class Lying:
        def get_x509_bundle_for_trust_domain(self, td):
            return ca_b.bundle("td-b.test")

        def get_bundle_set(self):
            return BundleSet([ca_b.bundle("td-b.test")])

    server_svid = make_svid(ca_b, "spiffe://td-b.test/server")
    forged = make_svid(ca_b, "spiffe://td-a.test/admin")
    with serve_mtls_threaded(WhoAmI, server_svid, Lying(), authorize_any()) as server:
        client = mtls_client_context(forged, Lying(), authorize_any())
        with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException)):
            _get(server, client)
        assert any("source returned the bundle of" in r for r in server.rejected)


def test_a_plain_x509_svid_is_its_own_source_on_both_sides(world: World) -> None:
    server_svid = make_svid(world.ca_a, SERVER_ID)
    client_svid = make_svid(world.ca_b, CLIENT_ID)
    assert client_svid.get_x509_svid() is client_svid
    server_context = mtls_server_context(server_svid, world.bundles, authorize_id(CLIENT_ID))
    client_context = mtls_client_context(client_svid, world.bundles, authorize_id(SERVER_ID))
    assert server_context.current_context() is not None
    with serve_mtls_threaded(WhoAmI, server_svid, world.bundles, authorize_id(CLIENT_ID)) as server:
        body, serial = _get(server, client_context)
    assert body == CLIENT_ID
    assert serial == server_svid.leaf.serial_number


class WhoAmIOrAnonymous(WhoAmI):
    """Like WhoAmI, but says "anonymous" for a client that sent no certificate."""

    def do_GET(self) -> None:
        try:
            who = str(peer_spiffe_id(self.request))
        except LookupError:
            who = "anonymous"
        body = who.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve_optional(world: World):
    return serve_mtls_threaded(
        WhoAmIOrAnonymous, world.server_svid, world.bundles, authorize_id(CLIENT_ID),
        client_cert="optional",
    )  # fmt: skip


def test_optional_client_cert_admits_a_client_without_one_as_anonymous(world: World) -> None:
    with _serve_optional(world) as server:
        anonymous = tls_client_context(world.bundles, authorize_id(SERVER_ID))
        assert _get(server, anonymous)[0] == "anonymous"
        # and a SPIFFE client on the same listener is still verified and named
        assert _get(server, _client(world))[0] == CLIENT_ID


def test_optional_client_cert_still_refuses_a_bad_or_unauthorized_certificate(
    world: World,
) -> None:
    forged = make_svid(world.ca_b, "spiffe://td-a.test/admin")
    intruder = make_svid(world.ca_b, "spiffe://td-b.test/intruder")
    with _serve_optional(world) as server:
        for svid in (forged, intruder):
            with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException)):
                _get(server, _client(world, svid=svid))
    assert any("could not verify leaf certificate" in r for r in server.rejected)
    assert any("intruder is not authorized" in r for r in server.rejected)


def test_client_cert_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="client_cert"):
        mtls_server_context(None, None, authorize_any(), client_cert="sometimes")  # type: ignore[arg-type]
