"""Our bundle endpoint client and server, each checked against a real SPIRE server."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from spire_fabric.federation import FederationError, fetch_bundle, serve_bundle_endpoint
from spire_fabric.identity import SpiffeBundle, TrustDomain, X509Bundle
from spire_fabric.testing.pki import make_ca, make_svid

pytestmark = pytest.mark.integration

TD_C = TrustDomain("td-c.test")
ENDPOINT_ID = "spiffe://td-c.test/bundle-endpoint"


def _spiffe_doc(text: str) -> str:
    """The JSON document in the CLI's output (it may print a header line first)."""
    return text[text.index("{") :]


def test_fetch_bundle_from_real_spire_endpoint_matches_spire_server_bundle_show(
    spire_server_factory,
) -> None:
    server = spire_server_factory("td-a.test", federation=True)
    td = TrustDomain("td-a.test")
    bootstrap = X509Bundle.parse_pem(td, server.bundle_pem().encode())

    fetched = fetch_bundle(
        server.federation_url, td, endpoint_id=server.server_id, bundle_source=bootstrap
    )

    oracle = SpiffeBundle.parse(
        td, _spiffe_doc(server.cli("bundle", "show", "-format", "spiffe").stdout)
    )
    assert set(fetched.x509_authorities) == set(oracle.x509_authorities)
    assert fetched.x509_authorities
    assert dict(fetched.jwt_authorities) == dict(oracle.jwt_authorities)
    assert fetched.jwt_authorities
    assert fetched.sequence_number == oracle.sequence_number
    assert fetched.refresh_hint is not None

    with pytest.raises(FederationError, match="is not authorized"):
        fetch_bundle(
            server.federation_url,
            td,
            endpoint_id="spiffe://td-a.test/not-the-server",
            bundle_source=bootstrap,
        )


def test_real_spire_server_fetches_and_stores_the_bundle_from_our_endpoint(
    spire_server_factory, tmp_path
) -> None:
    server = spire_server_factory("td-a.test")
    ca, next_ca = make_ca("td-c.test"), make_ca("td-c.test", "next CA")
    jwt_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    # What we serve has more than SPIRE is bootstrapped with, so the stored bundle can only
    # have come from our endpoint.
    served = SpiffeBundle(TD_C, (ca.cert, next_ca.cert), {"our-kid": jwt_key}, sequence_number=3)
    bootstrap = tmp_path / "td-c.pem"
    bootstrap.write_bytes(ca.bundle("td-c.test").to_pem())

    with serve_bundle_endpoint(
        served,
        TD_C,
        make_svid(ca, ENDPOINT_ID),
        refresh_hint=timedelta(seconds=30),
    ) as endpoint:
        server.cli(
            "federation", "create",
            "-trustDomain", TD_C.name,
            "-bundleEndpointURL", endpoint.url,
            "-bundleEndpointProfile", "https_spiffe",
            "-endpointSpiffeID", ENDPOINT_ID,
            "-trustDomainBundlePath", str(bootstrap),
            "-trustDomainBundleFormat", "pem",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        stored = None
        while time.monotonic() < deadline:
            server.cli("federation", "refresh", "-id", TD_C.name, check=False)
            listed = server.cli("bundle", "list", "-id", str(TD_C.id()), "-format", "spiffe")
            stored = SpiffeBundle.parse(TD_C, _spiffe_doc(listed.stdout))
            if "our-kid" in stored.jwt_authorities:
                break
            time.sleep(0.5)
        served_requests = endpoint.requests_served

    assert stored is not None
    assert set(stored.x509_authorities) == {ca.cert, next_ca.cert}
    assert stored.jwt_authorities.get("our-kid") == jwt_key
    assert served_requests >= 1
    doc = json.loads(served.marshal())
    assert doc["spiffe_sequence"] == 3
