"""py-spiffe users plug in: py-spiffe's own X509Source / JwtSource, fetched from a real
SPIRE agent, drive our mTLS contexts and JWT validation, and values convert both ways.

The oracle for the conversions is py-spiffe itself: what it fetched from the agent must
equal what our Workload API client fetched, and a token we fetched must validate with
py-spiffe's own validator against the bundles we converted for it.
"""

from __future__ import annotations

import http.client
import http.server

import pytest
import spiffe
from cryptography.hazmat.primitives.serialization import Encoding

from spire_fabric.identity import (
    BundleSet,
    JwtBundle,
    JwtSvid,
    PySpiffeX509Source,
    SpiffeId,
    TrustDomain,
    X509Bundle,
    X509Svid,
    from_pyspiffe,
    parse_and_validate_jwt_svid,
    to_pyspiffe,
    verify_x509_svid,
)
from spire_fabric.tls import (
    authorize_id,
    mtls_client_context,
    peer_spiffe_id,
    serve_mtls_threaded,
)
from spire_fabric.workload import WorkloadApiClient

from .conftest import Workload

pytestmark = pytest.mark.integration

TD = TrustDomain("example.org")


class WhoAmI(http.server.BaseHTTPRequestHandler):
    """Answers with the verified client ID: the handler saw the peer our check accepted."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = str(peer_spiffe_id(self.request)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_pyspiffe_x509_source_drives_our_mtls_server_and_client(workload: Workload) -> None:
    with spiffe.X509Source(socket_path=workload.endpoint, timeout_in_seconds=10) as source:
        me = authorize_id(workload.spiffe_id)
        # The py-spiffe source goes in as it is, on both sides, as SVID and bundle source.
        with serve_mtls_threaded(WhoAmI, source, source, me) as server:
            context = mtls_client_context(source, source, me)
            conn = http.client.HTTPSConnection(*server.address, context=context, timeout=5)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                assert response.status == 200
                assert response.read().decode() == workload.spiffe_id
                server_leaf = conn.sock.getpeercert(binary_form=True)
            finally:
                conn.close()
        presented = source.get_x509_context().default_svid
        assert server_leaf == presented.leaf.public_bytes(Encoding.DER)


def test_pyspiffe_values_from_the_agent_equal_ours_and_convert_back(workload: Workload) -> None:
    with WorkloadApiClient(workload.endpoint, timeout=5.0) as client:
        ours = client.fetch_x509_context()
    with spiffe.X509Source(socket_path=workload.endpoint, timeout_in_seconds=10) as source:
        context = source.get_x509_context()
        theirs = context.default_svid
        svid = from_pyspiffe(theirs)
        bundles = from_pyspiffe(context.x509_bundle_set)

    assert isinstance(svid, X509Svid)
    assert svid.spiffe_id == SpiffeId.parse(workload.spiffe_id)
    assert svid.spiffe_id == ours.default_svid.spiffe_id
    assert svid.cert_chain == ours.default_svid.cert_chain
    assert isinstance(bundles, BundleSet)
    server_bundle = X509Bundle.parse_pem(TD, workload.server.bundle_pem().encode())
    assert bundles.get_x509_bundle_for_trust_domain(TD) == server_bundle
    # The chain py-spiffe fetched verifies with our verifier against its own bundle set.
    assert verify_x509_svid(list(theirs.cert_chain), context.x509_bundle_set)[0] == svid.spiffe_id

    back = to_pyspiffe(svid)
    assert back.spiffe_id == theirs.spiffe_id
    assert back.leaf == theirs.leaf
    assert list(back.cert_chain) == list(theirs.cert_chain)
    fetched_bundle = context.x509_bundle_set.get_bundle_for_trust_domain(to_pyspiffe(TD))
    assert fetched_bundle is not None
    assert to_pyspiffe(server_bundle).x509_authorities == fetched_bundle.x509_authorities
    assert to_pyspiffe(bundles).get_bundle_for_trust_domain(to_pyspiffe(TD)) is not None


def test_adapter_converts_once_until_the_agent_rotates(workload: Workload) -> None:
    with spiffe.X509Source(socket_path=workload.endpoint, timeout_in_seconds=10) as source:
        adapter = PySpiffeX509Source(source)
        first = adapter.get_x509_svid()
        # Nothing rotated: the same converted object, so TLS contexts are not rebuilt.
        assert adapter.get_x509_svid() is first
        assert adapter.get_x509_bundle_for_trust_domain(TD) is (
            adapter.get_x509_bundle_for_trust_domain(TD)
        )
        assert adapter.get_x509_bundle_for_trust_domain(TrustDomain("other.org")) is None


def test_jwt_validation_accepts_a_pyspiffe_jwt_source(workload: Workload) -> None:
    with spiffe.JwtSource(socket_path=workload.endpoint, timeout_in_seconds=10) as source:
        token = source.fetch_svid({"billing"}).token
        svid = parse_and_validate_jwt_svid(token, source, ["billing"])
        assert str(svid.spiffe_id) == workload.spiffe_id
        with pytest.raises(ValueError, match="audience"):
            parse_and_validate_jwt_svid(token, source, ["payroll"])
        fetched = from_pyspiffe(source.fetch_svid({"billing", "audit"}))
        assert isinstance(fetched, JwtSvid)
        assert fetched.audience == ("audit", "billing")
        assert fetched.spiffe_id == svid.spiffe_id
        assert fetched.claims["sub"] == workload.spiffe_id
        their_jwt_bundle = source.get_bundle_for_trust_domain(to_pyspiffe(TD))
        assert their_jwt_bundle is not None
        assert isinstance(from_pyspiffe(their_jwt_bundle), JwtBundle)


def test_pyspiffe_validates_a_token_we_fetched_against_bundles_we_converted(
    workload: Workload,
) -> None:
    with WorkloadApiClient(workload.endpoint, timeout=5.0) as client:
        ours = client.fetch_jwt_svid("billing")
        jwt_bundles = client.fetch_jwt_bundles()
    their_set = to_pyspiffe(jwt_bundles, kind="jwt")
    their_bundle = their_set.get_bundle_for_trust_domain(to_pyspiffe(TD))
    assert their_bundle is not None
    theirs = spiffe.JwtSvid.parse_and_validate(ours.token, their_bundle, {"billing"})
    assert theirs.spiffe_id == to_pyspiffe(ours.spiffe_id)
    assert to_pyspiffe(ours).token == theirs.token
    converted = from_pyspiffe(theirs)
    assert (converted.token, converted.spiffe_id, converted.audience, converted.expiry) == (
        ours.token,
        ours.spiffe_id,
        ours.audience,
        ours.expiry,
    )

