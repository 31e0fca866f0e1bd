"""Conversions to and from py-spiffe on values made in memory; the same against a real
agent is tests/integration/workload/test_pyspiffe_real_agent.py."""

from __future__ import annotations

import pytest
import spiffe

from spire_fabric.identity import (
    BundleSet,
    JwtBundle,
    PySpiffeX509Source,
    SpiffeBundle,
    SpiffeId,
    TrustDomain,
    from_pyspiffe,
    is_pyspiffe,
    to_pyspiffe,
    x509_bundle_source_of,
    x509_svid_source_of,
)
from spire_fabric.testing.pki import make_ca, make_svid

TD = TrustDomain("example.org")


def test_ids_and_trust_domains_round_trip() -> None:
    sid = SpiffeId.parse("spiffe://example.org/api")
    assert from_pyspiffe(to_pyspiffe(sid)) == sid
    assert from_pyspiffe(to_pyspiffe(TD)) == TD
    assert is_pyspiffe(to_pyspiffe(sid)) and not is_pyspiffe(sid)


def test_svid_and_bundle_round_trip_keeps_certificates_and_key() -> None:
    ca = make_ca("example.org")
    svid = make_svid(ca, "spiffe://example.org/api")
    back = from_pyspiffe(to_pyspiffe(svid))
    assert back.spiffe_id == svid.spiffe_id
    assert back.cert_chain == svid.cert_chain
    assert back.private_key_pem() == svid.private_key_pem()
    bundle = ca.bundle("example.org")
    assert from_pyspiffe(to_pyspiffe(bundle)) == bundle


def test_bundle_sets_convert_by_kind_and_spiffe_bundles_give_either_half() -> None:
    ca = make_ca("example.org")
    x509 = ca.bundle("example.org")
    jwt = JwtBundle(TD, {"k1": ca.key.public_key()})
    both = BundleSet([SpiffeBundle(TD, x509_authorities=x509.x509_authorities)])
    their_x509 = to_pyspiffe(both)
    assert isinstance(their_x509, spiffe.X509BundleSet)
    assert from_pyspiffe(their_x509).get_x509_bundle_for_trust_domain(TD) == x509
    their_jwt = to_pyspiffe(BundleSet([jwt]), kind="jwt")
    assert isinstance(their_jwt, spiffe.JwtBundleSet)
    assert from_pyspiffe(their_jwt).get_jwt_bundle_for_trust_domain(TD) == jwt
    # A set of X509Bundles has no JWT half: the JWT set is empty, not an error.
    assert to_pyspiffe(BundleSet([x509]), kind="jwt").bundles == set()


def test_a_pyspiffe_bundle_set_is_a_bundle_source_for_our_contexts() -> None:
    ca = make_ca("example.org")
    their_set = spiffe.X509BundleSet.of([ca.bundle("example.org").to_spiffe()])
    source = x509_bundle_source_of(their_set)
    assert isinstance(source, PySpiffeX509Source)
    assert source.get_x509_bundle_for_trust_domain(TD) == ca.bundle("example.org")
    assert list(source.get_bundle_set()) == [ca.bundle("example.org")]
    # The same py-spiffe object gets the same wrapper: conversions are cached across calls.
    assert x509_bundle_source_of(their_set) is source
    with pytest.raises(TypeError, match="holds no SVID"):
        source.get_x509_svid()


def test_our_sources_pass_through_untouched_and_strangers_are_refused() -> None:
    ca = make_ca("example.org")
    svid = make_svid(ca, "spiffe://example.org/api")
    assert x509_svid_source_of(svid) is svid
    bundle = ca.bundle("example.org")
    assert x509_bundle_source_of(bundle) is bundle
    with pytest.raises(TypeError, match="no spire_fabric equivalent"):
        from_pyspiffe(object())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"no X\.509 SVID source"):
        x509_svid_source_of(spiffe.TrustDomain("example.org"))


def test_py_spiffe_lowercases_what_our_strict_ids_refuse() -> None:
    # py-spiffe accepts and lowercases an uppercase trust domain; SPIFFE forbids it, and
    # converting re-validates, so the difference surfaces here, not in a handshake.
    their = spiffe.SpiffeId("spiffe://Example.org/api")
    assert from_pyspiffe(their) == SpiffeId.parse("spiffe://example.org/api")
