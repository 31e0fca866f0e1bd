"""The Enterprise Root CA hierarchy keeps each trust domain inside its name constraint."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from spire_fabric.identity import (
    BundleSet,
    TrustDomain,
    X509Bundle,
    X509SvidError,
    verify_x509_svid,
)
from spire_fabric.runtime.ca_hierarchy import (
    CertificateAuthority,
    create_root_ca,
    issue_intermediate_ca,
    load_ca,
    write_ca,
)

UPSTREAM = TrustDomain("enterprise-root.org")
DOWNSTREAM = TrustDomain("downstream.example.org")


def mint_leaf(issuer: CertificateAuthority, spiffe_id: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
        .sign(issuer.private_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def hierarchy() -> tuple[CertificateAuthority, CertificateAuthority, CertificateAuthority]:
    root = create_root_ca()
    return root, issue_intermediate_ca(root, UPSTREAM), issue_intermediate_ca(root, DOWNSTREAM)


def both_bundles(root: CertificateAuthority) -> BundleSet:
    # Both trust domains trust the same Enterprise Root, as DESIGN.md describes.
    return BundleSet(
        [X509Bundle(UPSTREAM, (root.certificate,)), X509Bundle(DOWNSTREAM, (root.certificate,))]
    )


def test_intermediate_may_issue_for_its_own_trust_domain(hierarchy) -> None:
    root, upstream, _ = hierarchy
    leaf = mint_leaf(upstream, "spiffe://enterprise-root.org/ns/x/sa/y")
    spiffe_id, chain = verify_x509_svid([leaf, upstream.certificate], both_bundles(root))
    assert str(spiffe_id) == "spiffe://enterprise-root.org/ns/x/sa/y"
    assert chain[-1] == root.certificate


def test_upstream_intermediate_cannot_mint_a_downstream_svid(hierarchy) -> None:
    # The cross-domain SVID DESIGN.md warns about: signed with the upstream intermediate's
    # key, claiming the downstream trust domain, chaining to a root both bundles hold.
    root, upstream, _ = hierarchy
    forged = mint_leaf(upstream, "spiffe://downstream.example.org/ns/downstream-workloads/sa/x")
    with pytest.raises(X509SvidError, match="permitted subtree violation"):
        verify_x509_svid([forged, upstream.certificate], both_bundles(root))


def test_intermediates_carry_the_constraint_and_room_for_spires_ca(hierarchy) -> None:
    root, upstream, downstream = hierarchy
    assert root.permitted_trust_domain is None
    assert upstream.permitted_trust_domain == UPSTREAM
    assert downstream.permitted_trust_domain == DOWNSTREAM
    constraints = upstream.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca and constraints.value.path_length == 1
    with pytest.raises(x509.ExtensionNotFound):
        upstream.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_written_ca_has_private_modes_and_loads_back(hierarchy, tmp_path) -> None:
    _, upstream, _ = hierarchy
    files = write_ca(upstream, tmp_path / "ca", "upstream")
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    loaded = load_ca(files)
    assert loaded.certificate == upstream.certificate
    assert loaded.chain == upstream.chain
    assert not list((tmp_path / "ca").glob(".*.tmp"))


def test_load_ca_refuses_a_key_that_does_not_match(hierarchy, tmp_path) -> None:
    _, upstream, downstream = hierarchy
    files = write_ca(upstream, tmp_path, "upstream")
    other = write_ca(downstream, tmp_path, "downstream")
    files.key_path.write_bytes(other.key_path.read_bytes())
    with pytest.raises(ValueError, match="does not match"):
        load_ca(files)
