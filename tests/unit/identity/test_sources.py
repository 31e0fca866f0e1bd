"""One SVID source protocol and one bundle source protocol, defined in identity, are what
tls, federation, the server client and the workload sources speak."""

from __future__ import annotations

import typing

import spiffe

import spire_fabric.server._transport as transport
from spire_fabric import federation, identity, tls, workload
from spire_fabric.identity import (
    BundleSet,
    JwtBundleSource,
    X509BundleSource,
    X509SvidSource,
)
from spire_fabric.server._client_config import ClientBase
from spire_fabric.testing.pki import MutableSvidSource, make_ca, make_svid


def test_the_protocols_live_in_identity_and_tls_reexports_the_same_object() -> None:
    assert X509SvidSource.__module__ == "spire_fabric.identity._sources"
    assert X509BundleSource.__module__ == "spire_fabric.identity._sources"
    assert JwtBundleSource.__module__ == "spire_fabric.identity._sources"
    assert tls.X509SvidSource is identity.X509SvidSource
    assert transport.X509BundleSourceLike is X509BundleSource  # the old name, kept


def test_an_x509_svid_is_its_own_svid_source() -> None:
    ca = make_ca("td.test")
    svid = make_svid(ca, "spiffe://td.test/web")
    assert svid.get_x509_svid() is svid
    assert isinstance(svid, X509SvidSource)
    assert isinstance(MutableSvidSource(svid), X509SvidSource)
    bundle = ca.bundle("td.test")
    assert isinstance(bundle, X509BundleSource)
    assert isinstance(BundleSet([bundle]), X509BundleSource)


def _hints(func: object) -> dict[str, object]:
    # py-spiffe types appear in the hints (its sources are accepted too) but spiffe is
    # imported only for type checking, so the name is supplied here.
    return typing.get_type_hints(func, localns={"spiffe": spiffe})


def test_tls_federation_and_server_annotate_with_the_identity_protocols() -> None:
    for func in (
        tls.mtls_client_context,
        tls.mtls_server_context,
        tls.serve_mtls_threaded,
        federation.serve_bundle_endpoint,
        ClientBase.__init__,
        transport.build_channel_spec,
    ):
        hints = _hints(func)
        assert typing.get_args(hints["svid_source"])[:1] == (X509SvidSource,) or (
            hints["svid_source"] is X509SvidSource
        ), func
        bundle = hints["bundle_source"]
        assert bundle is X509BundleSource or X509BundleSource in typing.get_args(bundle), func
    fetch = _hints(federation.fetch_bundle)["bundle_source"]
    assert X509BundleSource in typing.get_args(fetch)


def test_the_workload_sources_provide_the_protocols_methods() -> None:
    for cls in (workload.X509Source, workload.AsyncX509Source):
        assert callable(cls.get_x509_svid)
        assert callable(cls.get_x509_bundle_for_trust_domain)
    for cls in (workload.BundleSource, workload.AsyncBundleSource):
        assert callable(cls.get_x509_bundle_for_trust_domain)
        assert callable(cls.get_jwt_bundle_for_trust_domain)
    for cls in (workload.JwtSource, workload.AsyncJwtSource):
        assert callable(cls.get_jwt_bundle_for_trust_domain)
