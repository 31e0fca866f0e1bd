"""X.509 bundle: the CA certificates one trust domain's X509-SVIDs chain to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ._bundle_diff import BundleDiff, diff_bundles
from ._certs import (
    certificates_to_der,
    certificates_to_pem,
    load_der_certificates,
    load_pem_certificates,
)
from ._errors import BundleError
from ._spiffe_id import TrustDomain

if TYPE_CHECKING:
    import spiffe

__all__ = ["X509Bundle"]


def dedupe_certificates(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Keep first occurrences in order, like go-spiffe's AddX509Authority."""
    return tuple(dict.fromkeys(certs))


@dataclass(frozen=True)
class X509Bundle:
    """Immutable: rotation replaces the bundle (e.g. in a BundleSet) instead of editing it,
    so a verifier never sees a half-updated set of roots.

    A bundle is itself an X509BundleSource that knows only its own trust domain.
    """

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.trust_domain, TrustDomain):
            raise TypeError("trust_domain must be a TrustDomain")
        object.__setattr__(self, "x509_authorities", dedupe_certificates(self.x509_authorities))

    @classmethod
    def parse_pem(cls, trust_domain: TrustDomain, data: bytes) -> X509Bundle:
        """Parse concatenated PEM certificates (e.g. ``spire-server bundle show``) as the
        bundle of ``trust_domain``; a BundleError names what is wrong.
        """
        try:
            return cls(trust_domain, tuple(load_pem_certificates(data)))
        except ValueError as e:
            raise BundleError(f"x509bundle: cannot parse certificate: {e}") from None

    @classmethod
    def parse_der(cls, trust_domain: TrustDomain, data: bytes) -> X509Bundle:
        """Parse concatenated DER certificates, as the Workload API sends bundles."""
        try:
            return cls(trust_domain, tuple(load_der_certificates(data)))
        except ValueError as e:
            raise BundleError(f"x509bundle: cannot parse certificate: {e}") from None

    @classmethod
    def from_spiffe(cls, bundle: spiffe.X509Bundle) -> X509Bundle:
        """Convert from py-spiffe, re-validating the trust domain strictly."""
        # py-spiffe keeps a set; sort so the result does not depend on hash order.
        authorities = sorted(bundle.x509_authorities, key=lambda c: c.fingerprint(hashes.SHA256()))
        return cls(TrustDomain.from_spiffe(bundle.trust_domain), tuple(authorities))

    def to_pem(self) -> bytes:
        """The authorities as concatenated PEM."""
        return certificates_to_pem(self.x509_authorities)

    def to_der(self) -> bytes:
        """The authorities as concatenated DER, as the Workload API sends them."""
        return certificates_to_der(self.x509_authorities)

    def to_spiffe(self) -> spiffe.X509Bundle:
        """The py-spiffe equivalent (``spiffe.X509Bundle``)."""
        import spiffe

        return spiffe.X509Bundle(self.trust_domain.to_spiffe(), set(self.x509_authorities))

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        """This bundle if it is ``trust_domain``'s: a bundle is its own ``X509BundleSource``."""
        return self if trust_domain == self.trust_domain else None

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.x509_bundle(self)

    def diff(self, other: object) -> BundleDiff:
        """What changed from this bundle to ``other`` (a later version of it): authorities
        added and removed, sequence number and refresh hint. Any bundle type of the same
        trust domain may be compared."""
        return diff_bundles(self, other)

    def __repr__(self) -> str:
        return f"X509Bundle({self.trust_domain.name!r}, {len(self.x509_authorities)} authorities)"
