"""The small interfaces verification code accepts, as go-spiffe's ``x509bundle.Source``.

A single bundle, a BundleSet, a Workload API watcher and a federation poller all fit, so
verifiers never care where trust comes from. Returning ``None`` (rather than raising)
means "no bundle for that trust domain"; the verifier turns that into an error naming it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._jwt_bundle import JwtBundle
from ._spiffe_id import TrustDomain
from ._x509_bundle import X509Bundle

__all__ = ["JwtBundleSource", "X509BundleSource"]


@runtime_checkable
class X509BundleSource(Protocol):
    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        """The X.509 bundle of ``trust_domain``, or None if this source has none."""
        ...


@runtime_checkable
class JwtBundleSource(Protocol):
    def get_jwt_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> JwtBundle | None:
        """The JWT bundle of ``trust_domain``, or None if this source has none."""
        ...
