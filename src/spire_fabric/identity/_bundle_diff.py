"""What changed between two versions of one trust domain's bundle (e.g. across a CA
rotation): the authorities added and removed, and the sequence number and refresh hint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography import x509

from ._errors import BundleError
from ._spiffe_id import TrustDomain

__all__ = ["BundleDiff", "diff_bundles"]


@dataclass(frozen=True)
class BundleDiff:
    """``old.diff(new)``: what ``new`` has that ``old`` had not (added) and the reverse
    (removed). Authorities are compared by certificate (X.509) and key ID (JWT)."""

    trust_domain: TrustDomain
    x509_added: tuple[x509.Certificate, ...] = ()
    x509_removed: tuple[x509.Certificate, ...] = ()
    jwt_added: tuple[str, ...] = ()
    jwt_removed: tuple[str, ...] = ()
    sequence_number: tuple[int | None, int | None] = (None, None)
    refresh_hint: tuple[timedelta | None, timedelta | None] = (None, None)

    def __bool__(self) -> bool:
        """True when the authorities differ (a changed sequence alone is not a change of trust)."""
        return bool(self.x509_added or self.x509_removed or self.jwt_added or self.jwt_removed)

    def summary(self) -> str:
        """One line: how many authorities were added and removed, of each kind."""
        parts = [
            f"{len(self.x509_added)} X.509 added",
            f"{len(self.x509_removed)} X.509 removed",
            f"{len(self.jwt_added)} JWT added",
            f"{len(self.jwt_removed)} JWT removed",
        ]
        old, new = self.sequence_number
        if old != new:
            parts.append(f"sequence {old} → {new}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"BundleDiff({self.trust_domain.name!r}: {self.summary()})"

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.bundle_diff(self)


def _authorities(bundle: Any) -> tuple[tuple[x509.Certificate, ...], tuple[str, ...]]:
    certs = tuple(
        a if isinstance(a, x509.Certificate) else a.certificate
        for a in getattr(bundle, "x509_authorities", ())
    )
    jwt = getattr(bundle, "jwt_authorities", ())
    kids = (
        tuple(jwt)
        if isinstance(jwt, dict) or hasattr(jwt, "keys")
        else tuple(a.key_id for a in jwt)
    )
    return certs, kids


def _hint(bundle: Any) -> timedelta | None:
    hint = getattr(bundle, "refresh_hint", None)
    if isinstance(hint, int):
        return timedelta(seconds=hint) if hint else None
    return hint


def diff_bundles(old: Any, new: Any) -> BundleDiff:
    """The diff of two bundles of one trust domain (any of X509Bundle, JwtBundle,
    SpiffeBundle or the Server API's Bundle, even mixed)."""
    if old.trust_domain != new.trust_domain:
        raise BundleError(
            f"bundle diff: {old.trust_domain.name!r} and {new.trust_domain.name!r} are bundles "
            "of different trust domains"
        )
    old_certs, old_kids = _authorities(old)
    new_certs, new_kids = _authorities(new)
    return BundleDiff(
        trust_domain=new.trust_domain,
        x509_added=tuple(c for c in new_certs if c not in old_certs),
        x509_removed=tuple(c for c in old_certs if c not in new_certs),
        jwt_added=tuple(k for k in new_kids if k not in old_kids),
        jwt_removed=tuple(k for k in old_kids if k not in new_kids),
        sequence_number=(
            getattr(old, "sequence_number", None),
            getattr(new, "sequence_number", None),
        ),
        refresh_hint=(_hint(old), _hint(new)),
    )
