from __future__ import annotations

from datetime import timedelta

import pytest

from spire_fabric.identity import (
    BundleSet,
    SpiffeBundle,
    SpiffeId,
    TrustDomain,
    X509Bundle,
    X509SvidError,
    verify_x509_svid,
)

from ._pki import NOW, make_ca, make_leaf

TD_A = TrustDomain("a.example.org")
TD_B = TrustDomain("b.example.org")


@pytest.fixture(scope="module")
def root_a():
    return make_ca(TD_A.name)


@pytest.fixture(scope="module")
def root_b():
    return make_ca(TD_B.name)


@pytest.fixture(scope="module")
def bundles(root_a, root_b) -> BundleSet[X509Bundle]:
    return BundleSet([X509Bundle(TD_A, (root_a.cert,)), X509Bundle(TD_B, (root_b.cert,))])


def test_valid_chain_with_intermediate_is_accepted_and_returns_the_id(root_a, bundles):
    intermediate = make_ca(TD_A.name, issuer=root_a, label="intermediate")
    leaf = make_leaf(intermediate, ["spiffe://a.example.org/workload"])

    spiffe_id, chain = verify_x509_svid([leaf.cert, intermediate.cert], bundles)

    assert spiffe_id == SpiffeId.parse("spiffe://a.example.org/workload")
    assert chain == [leaf.cert, intermediate.cert, root_a.cert]


def test_chain_from_other_trust_domains_ca_claiming_this_trust_domain_is_rejected(root_b, bundles):
    # root_b is trusted, but only for b.example.org; it must not vouch for a.example.org.
    forged = make_leaf(root_b, ["spiffe://a.example.org/workload"])
    with pytest.raises(X509SvidError, match="x509svid: could not verify leaf certificate: "):
        verify_x509_svid([forged.cert], bundles)
    with pytest.raises(X509SvidError, match="could not verify leaf certificate"):
        verify_x509_svid([forged.cert, root_b.cert], bundles)


def test_leaf_that_is_a_ca_is_rejected(root_a, bundles):
    leaf = make_leaf(root_a, ["spiffe://a.example.org/w"], ca=True, key_cert_sign=True)
    with pytest.raises(X509SvidError, match="leaf certificate with CA flag set to true"):
        verify_x509_svid([leaf.cert], bundles)


def test_leaf_with_key_cert_sign_is_rejected(root_a, bundles):
    leaf = make_leaf(root_a, ["spiffe://a.example.org/w"], key_cert_sign=True)
    with pytest.raises(X509SvidError, match="leaf certificate with KeyCertSign key usage"):
        verify_x509_svid([leaf.cert], bundles)


def test_leaf_with_crl_sign_is_rejected(root_a, bundles):
    leaf = make_leaf(root_a, ["spiffe://a.example.org/w"], crl_sign=True)
    with pytest.raises(X509SvidError, match="leaf certificate with KeyCrlSign key usage"):
        verify_x509_svid([leaf.cert], bundles)


def test_expired_leaf_is_rejected(root_a, bundles):
    leaf = make_leaf(
        root_a,
        ["spiffe://a.example.org/w"],
        not_before=NOW - timedelta(hours=2),
        not_after=NOW - timedelta(hours=1),
    )
    with pytest.raises(X509SvidError, match="certificate has expired"):
        verify_x509_svid([leaf.cert], bundles)


def test_now_moves_the_validity_check(root_a, bundles):
    leaf = make_leaf(root_a, ["spiffe://a.example.org/w"])
    verify_x509_svid([leaf.cert], bundles, now=NOW)
    with pytest.raises(X509SvidError, match="certificate has expired"):
        verify_x509_svid([leaf.cert], bundles, now=NOW + timedelta(hours=2))


@pytest.mark.parametrize(
    ("uris", "reason"),
    [
        ([], "certificate contains no URI SAN"),
        (
            ["spiffe://a.example.org/one", "spiffe://a.example.org/two"],
            "certificate contains more than one URI SAN",
        ),
        (["spiffe://A.example.org/w"], "trust domain characters are limited"),
    ],
)
def test_leaf_without_exactly_one_valid_spiffe_uri_san_is_rejected(root_a, bundles, uris, reason):
    leaf = make_leaf(root_a, uris)
    with pytest.raises(X509SvidError, match=f"x509svid: could not get leaf SPIFFE ID: .*{reason}"):
        verify_x509_svid([leaf.cert], bundles)


def test_leaf_of_trust_domain_without_bundle_is_rejected_naming_it(root_a, bundles):
    leaf = make_leaf(root_a, ["spiffe://c.example.org/w"])
    with pytest.raises(
        X509SvidError, match=r"no X\.509 bundle found for trust domain 'c\.example\.org'"
    ):
        verify_x509_svid([leaf.cert], bundles)


def test_empty_chain_is_rejected(bundles):
    with pytest.raises(X509SvidError, match="empty certificates chain"):
        verify_x509_svid([], bundles)


def test_spiffe_bundle_set_and_single_bundle_are_sources_too(root_a):
    leaf = make_leaf(root_a, ["spiffe://a.example.org/w"])
    spiffe_set = BundleSet([SpiffeBundle(TD_A, (root_a.cert,))])
    assert verify_x509_svid([leaf.cert], spiffe_set)[0].trust_domain == TD_A
    assert verify_x509_svid([leaf.cert], X509Bundle(TD_A, (root_a.cert,)))[0].path == "/w"


@pytest.fixture(scope="module")
def constrained():
    """One shared root signs for both trust domains (the enterprise topology in DESIGN.md),
    but its name constraint permits only URIs of a.example.org; OpenSSL must enforce it."""
    root = make_ca("enterprise-root.org", permitted_uri_subtree=TD_A.name)
    intermediate = make_ca(TD_A.name, issuer=root, label="intermediate")
    # Both trust domains trust the shared root, so only the constraint can refuse.
    source = BundleSet([X509Bundle(TD_A, (root.cert,)), X509Bundle(TD_B, (root.cert,))])
    return root, intermediate, source


class TestUriNameConstraints:
    def test_leaf_inside_the_permitted_subtree_is_accepted(self, constrained):
        _, intermediate, source = constrained
        leaf = make_leaf(intermediate, ["spiffe://a.example.org/workload"])
        spiffe_id, chain = verify_x509_svid([leaf.cert, intermediate.cert], source)
        assert spiffe_id.trust_domain == TD_A
        assert len(chain) == 3

    def test_leaf_for_other_trust_domain_is_refused_as_subtree_violation(self, constrained):
        _, intermediate, source = constrained
        leaf = make_leaf(intermediate, ["spiffe://b.example.org/workload"])
        with pytest.raises(X509SvidError, match="permitted subtree violation"):
            verify_x509_svid([leaf.cert, intermediate.cert], source)
