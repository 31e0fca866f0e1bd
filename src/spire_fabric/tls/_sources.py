"""What the tls package needs from an SVID source and from a bundle source.

Both protocols are defined once, in ``spire_fabric.identity`` (``X509SvidSource``,
``X509BundleSource``); ``X509SvidSource`` stays importable from here as the same object.
The Workload API ``X509Source``, a plain ``X509Svid`` and anything else with
``get_x509_svid()`` plug in unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from spire_fabric.identity import SpiffeBundle, X509Bundle, X509BundleSource, X509SvidSource

__all__ = ["X509SvidSource", "all_x509_bundles"]


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
