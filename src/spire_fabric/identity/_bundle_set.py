"""A set of bundles keyed by trust domain: the trust store of a federating workload."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from ._jwt_bundle import JwtBundle
from ._spiffe_bundle import SpiffeBundle
from ._spiffe_id import TrustDomain
from ._x509_bundle import X509Bundle

__all__ = ["BundleSet"]

B = TypeVar("B", X509Bundle, JwtBundle, SpiffeBundle)


class BundleSet(Generic[B]):
    """Bundles of one kind, at most one per trust domain; adding replaces.

    Safe to share between threads: a watcher can ``add`` a rotated bundle while verifiers
    read. It is an X509BundleSource and a JwtBundleSource; a set of X509Bundles answers
    None for JWT bundles and vice versa, a set of SpiffeBundles answers both.
    """

    def __init__(self, bundles: Iterable[B] = ()) -> None:
        self._lock = threading.Lock()
        self._bundles: dict[TrustDomain, B] = {}
        for bundle in bundles:
            self.add(bundle)

    def add(self, bundle: B) -> None:
        """Add the bundle, replacing any bundle already held for its trust domain."""
        with self._lock:
            self._bundles[bundle.trust_domain] = bundle

    def remove(self, trust_domain: TrustDomain) -> None:
        """Forget the bundle of ``trust_domain``; a no-op if there is none."""
        with self._lock:
            self._bundles.pop(trust_domain, None)

    def get(self, trust_domain: TrustDomain) -> B | None:
        """The bundle held for ``trust_domain``, or None."""
        return self._bundles.get(trust_domain)

    def trust_domains(self) -> list[TrustDomain]:
        """The trust domains held, sorted."""
        with self._lock:
            return sorted(self._bundles)

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        """The X.509 bundle (or X.509 half of a SPIFFE bundle) of ``trust_domain``, or None."""
        bundle = self._bundles.get(trust_domain)
        if isinstance(bundle, SpiffeBundle):
            return bundle.x509_bundle()
        return bundle if isinstance(bundle, X509Bundle) else None

    def get_jwt_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> JwtBundle | None:
        """The JWT bundle (or JWT half of a SPIFFE bundle) of ``trust_domain``, or None."""
        bundle = self._bundles.get(trust_domain)
        if isinstance(bundle, SpiffeBundle):
            return bundle.jwt_bundle()
        return bundle if isinstance(bundle, JwtBundle) else None

    def __contains__(self, trust_domain: object) -> bool:
        return trust_domain in self._bundles

    def __len__(self) -> int:
        return len(self._bundles)

    def __iter__(self) -> Iterator[B]:
        """Bundles in trust domain order, from a snapshot taken now."""
        with self._lock:
            snapshot = sorted(self._bundles.items())
        return iter([bundle for _, bundle in snapshot])

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.bundle_set(self)

    def __repr__(self) -> str:
        names = ", ".join(td.name for td in self.trust_domains())
        return f"BundleSet([{names}])"
