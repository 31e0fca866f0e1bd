"""mTLS between workloads of two real, federated SPIRE trust domains."""

from __future__ import annotations

import http.client
import http.server
import ssl
import time

import pytest

from spire_fabric.identity import BundleSet, SpiffeId, X509Bundle
from spire_fabric.testing.pki import Ca, make_ca, make_svid
from spire_fabric.tls import (
    PeerRejectedError,
    authorize_any,
    authorize_id,
    connect_mtls,
    mtls_client_context,
    peer_chain,
    peer_spiffe_id,
    serve_mtls_threaded,
)

from ._federated import INTRUDER_B, SERVICE_A, SERVICE_B, TD_A, TD_B, Federated

pytestmark = pytest.mark.integration


class WhoAmI(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = str(peer_spiffe_id(self.request)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _get(address: tuple[str, int], context: ssl.SSLContext) -> tuple[str, int]:
    conn = http.client.HTTPSConnection(*address, context=context, timeout=10)
    try:
        conn.request("GET", "/")
        body = conn.getresponse().read().decode()
        return body, peer_chain(conn.sock)[0].serial_number
    finally:
        conn.close()


def test_workloads_in_a_and_b_mutually_authenticate_both_ways_by_exact_id(
    federated: Federated,
) -> None:
    federated.register(SERVICE_A, "a")
    federated.register(SERVICE_B, "b")
    federated.register(INTRUDER_B, "intruder")
    a = federated.x509_source(SERVICE_A, "a")
    b = federated.x509_source(SERVICE_B, "b")
    intruder = federated.x509_source(INTRUDER_B, "intruder")
    try:
        # A serves, B calls.
        with serve_mtls_threaded(WhoAmI, a, a, authorize_id(SERVICE_B)) as server_a:
            body, _ = _get(server_a.address, mtls_client_context(b, b, authorize_id(SERVICE_A)))
            assert body == SERVICE_B
            # The third identity is verified fine but refused by A's authorizer.
            with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException)):
                _get(server_a.address, mtls_client_context(intruder, intruder, authorize_any()))
            assert any(
                f"peer {INTRUDER_B} is not authorized" in reason for reason in server_a.rejected
            )
        # B serves, A calls.
        with serve_mtls_threaded(WhoAmI, b, b, authorize_id(SERVICE_A)) as server_b:
            to_b = mtls_client_context(a, a, authorize_id(SERVICE_B))
            sock, peer = connect_mtls(*server_b.address, to_b)
            sock.close()
            assert peer == SpiffeId.parse(SERVICE_B)
            # A's client refuses B's intruder posing as the server it wants.
            with (
                serve_mtls_threaded(WhoAmI, intruder, intruder, authorize_any()) as fake,
                pytest.raises(PeerRejectedError, match="is not authorized"),
            ):
                connect_mtls(*fake.address, to_b)
    finally:
        for source in (a, b, intruder):
            source.close()


def test_forged_peer_with_a_td_a_id_chaining_to_td_b_ca_is_refused_though_b_is_trusted(
    federated: Federated,
) -> None:
    federated.register(SERVICE_A, "a")
    federated.register(SERVICE_B, "b")
    a = federated.x509_source(SERVICE_A, "a")
    b = federated.x509_source(SERVICE_B, "b")
    forging_ca: Ca = make_ca("td-b.test", "forging CA")
    # A trusts B's real bundle plus a CA that B "owns" (as if B's CA had been compromised
    # or B added it): B may vouch for td-b.test IDs with it, never for td-a.test IDs.
    real_b = a.get_x509_bundle_for_trust_domain(TD_B)
    assert real_b is not None
    trust = BundleSet(
        [
            a.get_x509_bundle_for_trust_domain(TD_A),
            X509Bundle(TD_B, (*real_b.x509_authorities, forging_ca.cert)),
        ]
    )
    forged = make_svid(forging_ca, "spiffe://td-a.test/service-a-admin")
    honest_b_via_forging_ca = make_svid(forging_ca, "spiffe://td-b.test/ok")
    try:
        with serve_mtls_threaded(WhoAmI, a, trust, authorize_any()) as server:
            with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException)):
                _get(server.address, mtls_client_context(forged, b, authorize_any()))
            assert any("could not verify leaf certificate" in r for r in server.rejected)
            # Control: the same CA is accepted for an ID of its own trust domain, so what
            # refused the forgery is the per-trust-domain check, not the OpenSSL pool.
            body, _ = _get(
                server.address, mtls_client_context(honest_b_via_forging_ca, b, authorize_any())
            )
            assert body == "spiffe://td-b.test/ok"
            # And a real B workload is still served.
            assert _get(server.address, mtls_client_context(b, b, authorize_any()))[0] == SERVICE_B
    finally:
        a.close()
        b.close()


def test_server_serves_continuously_across_two_svid_rotations_with_zero_failures(
    federated: Federated,
) -> None:
    ttl = 20  # the agent rotates at half-life, so a new SVID every ~10-15 s
    federated.register(SERVICE_A, "a", x509_svid_ttl=ttl)
    federated.register(SERVICE_B, "b", x509_svid_ttl=ttl)
    a = federated.x509_source(SERVICE_A, "a")
    b = federated.x509_source(SERVICE_B, "b")
    serials: list[int] = []
    failures: list[str] = []
    try:
        with serve_mtls_threaded(WhoAmI, b, b, authorize_id(SERVICE_A)) as server:
            client = mtls_client_context(a, a, authorize_id(SERVICE_B))
            deadline = time.monotonic() + 120
            while len(set(serials)) < 3 and time.monotonic() < deadline:
                try:
                    body, serial = _get(server.address, client)
                    assert body == SERVICE_A
                    serials.append(serial)
                except Exception as e:  # count, do not stop: zero is the claim
                    failures.append(repr(e))
                time.sleep(0.05)
            builds = server.context.builds
    finally:
        a.close()
        b.close()
    distinct = list(dict.fromkeys(serials))
    print(
        f"requests={len(serials)} failures={len(failures)} serials={len(distinct)} builds={builds}"
    )
    assert failures == []
    assert len(distinct) >= 3, f"saw only {len(distinct)} server SVIDs in {len(serials)} requests"
    # Once a new SVID is on the wire the old one never comes back (no stale context).
    runs = [s for i, s in enumerate(serials) if i == 0 or serials[i - 1] != s]
    assert runs == distinct
    assert builds >= 3
