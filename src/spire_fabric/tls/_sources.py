"""What the tls package needs from an SVID source and from a bundle source.

Structural, like go-spiffe's ``x509svid.Source``: the Workload API ``X509Source``, a
static test source and anything else with these methods plug in unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from spire_fabric.identity import SpiffeBundle, X509Bundle, X509BundleSource, X509Svid

__all__ = ["X509SvidSource", "all_x509_bundles"]


@runtime_checkable
class X509SvidSource(Protocol):
    def get_x509_svid(self) -> X509Svid:
        """The current SVID. Rotation replaces the returned object, never mutates it."""
        ...


def all_x509_bundles(source: X509BundleSource) -> tuple[X509Bundle, ...]:
    """Every X.509 bundle ``source`` holds right now.

    Only needed for OpenSSL's in-handshake pre-check, which wants one pool of roots; the
    authoritative check asks the source for the peer's own trust domain. A plain
    ``X509BundleSource`` cannot be enumerated, so this accepts what can: a source with
    ``get_bundle_set()`` (the Workload API sources), a BundleSet or other iterable of
    bundles, or a single X509Bundle / SpiffeBundle.
    """
    get_set = getattr(source, "get_bundle_set", None)
    holder: object = get_set() if callable(get_set) else source
    if isinstance(holder, X509Bundle):
        return (holder,) if holder.x509_authorities else ()
    if isinstance(holder, SpiffeBundle):
        return (holder.x509_bundle(),) if holder.x509_authorities else ()
    if not isinstance(holder, Iterable):
        raise TypeError(
            f"tls: cannot list the trust bundles of {type(source).__name__}: pass a "
            "BundleSet, an X509Bundle/SpiffeBundle, or a source with get_bundle_set()"
        )
    bundles: list[X509Bundle] = []
    for item in holder:
        bundle = item.x509_bundle() if isinstance(item, SpiffeBundle) else item
        if isinstance(bundle, X509Bundle) and bundle.x509_authorities:
            bundles.append(bundle)
    return tuple(bundles)
