"""The verification cache behind the contexts' in-handshake check.

The connection is a stand-in exposing only ``get_unverified_chain()`` (the Python 3.13
API), because the cache's reuse rules are what is under test, not the handshake.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from spire_fabric.identity import BundleSet
from spire_fabric.testing.pki import make_ca, make_svid
from spire_fabric.tls import PeerRejectedError, authorize_any, authorize_id
from spire_fabric.tls._peer import VerifiedChainCache


class ChainOnly:
    def __init__(self, svid) -> None:
        self._chain = [c.public_bytes(serialization.Encoding.DER) for c in svid.cert_chain]

    def get_unverified_chain(self) -> list[bytes]:
        return self._chain


def test_cached_verification_is_dropped_when_the_peers_bundle_is_replaced() -> None:
    ca = make_ca("td-b.test")
    bundles = BundleSet([ca.bundle("td-b.test")])
    conn = ChainOnly(make_svid(ca, "spiffe://td-b.test/client"))
    cache = VerifiedChainCache(bundles)
    assert str(cache.verify_peer(conn, authorize_any())) == "spiffe://td-b.test/client"
    assert str(cache.verify_peer(conn, authorize_any())) == "spiffe://td-b.test/client"

    bundles.add(make_ca("td-b.test", "rotated").bundle("td-b.test"))  # old CA gone
    with pytest.raises(PeerRejectedError, match="could not verify leaf certificate"):
        cache.verify_peer(conn, authorize_any())


def test_cached_verification_still_runs_the_authorizer_every_time() -> None:
    ca = make_ca("td-b.test")
    cache = VerifiedChainCache(BundleSet([ca.bundle("td-b.test")]))
    conn = ChainOnly(make_svid(ca, "spiffe://td-b.test/client"))
    cache.verify_peer(conn, authorize_any())
    with pytest.raises(PeerRejectedError, match="not authorized"):
        cache.verify_peer(conn, authorize_id("spiffe://td-b.test/other"))


def test_cached_verification_is_dropped_when_the_trust_domain_is_removed() -> None:
    ca = make_ca("td-b.test")
    bundles = BundleSet([ca.bundle("td-b.test")])
    conn = ChainOnly(make_svid(ca, "spiffe://td-b.test/client"))
    cache = VerifiedChainCache(bundles)
    cache.verify_peer(conn, authorize_any())
    bundles.remove(ca.bundle("td-b.test").trust_domain)
    with pytest.raises(PeerRejectedError, match=r"no X\.509 bundle found"):
        cache.verify_peer(conn, authorize_any())
