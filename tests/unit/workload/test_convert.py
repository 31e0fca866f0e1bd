"""Workload API messages become identity values; malformed ones name what is wrong."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.proto.workload import workload_pb2
from spire_fabric.workload import WorkloadApiResponseError
from spire_fabric.workload._convert import (
    jwt_bundles_from_response,
    x509_bundles_from_response,
    x509_context_from_response,
)

from ._svids import make_ca, make_svid_der

EP = "unix:///tmp/agent.sock"


def _der(cert) -> bytes:  # type: ignore[no-untyped-def]
    return cert.public_bytes(serialization.Encoding.DER)


def test_x509_context_has_own_and_federated_bundles_and_hints() -> None:
    ca_a, ca_b = make_ca("a.org"), make_ca("b.org")
    cert, key = make_svid_der(ca_a, "spiffe://a.org/w")
    response = workload_pb2.X509SVIDResponse(
        svids=[
            workload_pb2.X509SVID(
                spiffe_id="spiffe://a.org/w",
                x509_svid=cert,
                x509_svid_key=key,
                bundle=_der(ca_a[0]),
                hint="internal",
            )
        ],
        federated_bundles={"spiffe://b.org": _der(ca_b[0])},
    )
    context = x509_context_from_response(response, EP)
    assert context.default_svid.spiffe_id == SpiffeId.parse("spiffe://a.org/w")
    assert context.default_svid.hint == "internal"
    assert context.bundles[TrustDomain("a.org")].x509_authorities == (ca_a[0],)
    assert context.bundles[TrustDomain("b.org")].x509_authorities == (ca_b[0],)
    with pytest.raises(TypeError):
        context.bundles[TrustDomain("c.org")] = context.bundles[TrustDomain("a.org")]  # type: ignore[index]


def test_corrupt_svid_is_a_response_error_naming_the_id_and_endpoint() -> None:
    response = workload_pb2.X509SVIDResponse(
        svids=[workload_pb2.X509SVID(spiffe_id="spiffe://a.org/w", x509_svid=b"\x30\x03")]
    )
    with pytest.raises(WorkloadApiResponseError, match=r"spiffe://a\.org/w") as err:
        x509_context_from_response(response, EP)
    assert EP in str(err.value)


def test_empty_responses_are_refused() -> None:
    with pytest.raises(WorkloadApiResponseError, match="without SVIDs"):
        x509_context_from_response(workload_pb2.X509SVIDResponse(), EP)
    with pytest.raises(WorkloadApiResponseError, match="without bundles"):
        x509_bundles_from_response(workload_pb2.X509BundlesResponse(), EP)
    with pytest.raises(WorkloadApiResponseError, match="without bundles"):
        jwt_bundles_from_response(workload_pb2.JWTBundlesResponse(), EP)


def test_jwt_bundle_that_is_not_jwks_names_its_trust_domain() -> None:
    response = workload_pb2.JWTBundlesResponse(bundles={"spiffe://a.org": b"not json"})
    with pytest.raises(WorkloadApiResponseError, match=r"spiffe://a\.org"):
        jwt_bundles_from_response(response, EP)
