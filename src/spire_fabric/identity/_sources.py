"""The small interfaces TLS and verification code accept, as go-spiffe's ``x509svid.Source``
and ``x509bundle.Source``: the one definition of each, used by tls, federation, the server
client and the verifiers alike.

Structural: an ``X509Svid`` (its own SVID source), a bundle or a BundleSet (their own bundle
sources), the Workload API sources, a federation poller and anything else with these
methods plug in unchanged. A bundle source returning ``None`` (rather than raising) means
"no bundle for that trust domain"; the verifier turns that into an error naming it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._jwt_bundle import JwtBundle
from ._spiffe_id import TrustDomain
from ._x509_bundle import X509Bundle
from ._x509_svid import X509Svid

__all__ = ["JwtBundleSource", "X509BundleSource", "X509SvidSource", "is_pyspiffe"]


def is_pyspiffe(value: object) -> bool:
    """Whether ``value`` is an object of py-spiffe (the ``spiffe`` package).

    Checked by module name, so code that never meets py-spiffe never imports it; the
    places that take a source call this first and adapt a py-spiffe one
    (``spire_fabric.identity.from_pyspiffe``).
    """
    return type(value).__module__.partition(".")[0] == "spiffe"


@runtime_checkable
class X509SvidSource(Protocol):
    """Anything that hands out the current X509-SVID: an ``X509Svid`` itself, the Workload
    API ``X509Source``, a py-spiffe ``X509Source`` wrapped by ``from_pyspiffe``."""

    def get_x509_svid(self) -> X509Svid:
        """The current SVID. Rotation replaces the returned object, never mutates it."""
        ...


@runtime_checkable
class X509BundleSource(Protocol):
    """Anything that answers "the X.509 bundle of this trust domain": a bundle, a
    ``BundleSet``, the Workload API sources, a federation watcher."""

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        """The X.509 bundle of ``trust_domain``, or None if this source has none."""
        ...


@runtime_checkable
class JwtBundleSource(Protocol):
    """Anything that answers "the JWT bundle of this trust domain", for JWT-SVID validation."""

    def get_jwt_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> JwtBundle | None:
        """The JWT bundle of ``trust_domain``, or None if this source has none."""
        ...
