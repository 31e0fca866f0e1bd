"""SPIFFE bundle: the JWKS document of the SPIFFE Trust Domain and Bundle spec, section 4.

https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#4-spiffe-bundle-format
It carries both X.509 and JWT authorities plus the refresh hint and sequence number that
bundle endpoints and federation need; py-spiffe has no type for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ._bundle_diff import BundleDiff, diff_bundles
from ._certs import load_der_certificate
from ._errors import BundleError
from ._jwk import (
    UnsupportedKeyTypeError,
    jwk_from_public_key,
    public_key_from_jwk,
)
from ._jwt_bundle import (
    JwtBundle,
    freeze_authorities,
    key_of_known_type,
    load_jwks_document,
    log_ignored_key,
    short,
)
from ._spiffe_id import TrustDomain
from ._x509_bundle import X509Bundle, dedupe_certificates

__all__ = ["SpiffeBundle"]

X509_SVID_USE = "x509-svid"
JWT_SVID_USE = "jwt-svid"
_MAX_UINT64 = 2**64 - 1
# The longest refresh hint a timedelta holds (999999999 days); go-spiffe's int64 seconds
# overflow time.Duration far earlier, so no real bundle comes near it.
_MAX_REFRESH_HINT = 999_999_999 * 86_400
_KEY_PARAMETERS = ("n", "e", "x", "y")


def _optional_uint(doc: Mapping[str, Any], name: str, maximum: int) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    # bool is an int in Python but `true` is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
        raise BundleError(
            f"spiffebundle: {name} must be a non-negative integer of at most {maximum}, "
            f"got {shown}"
        )
    return value


def _x509_authority(i: int, jwk: Mapping[str, Any]) -> x509.Certificate | None:
    x5c = jwk.get("x5c")
    if not isinstance(x5c, list) or len(x5c) != 1:
        got = len(x5c) if isinstance(x5c, list) else "none"
        raise BundleError(
            f"spiffebundle: keys[{i}] (use {X509_SVID_USE!r}): expected a single certificate "
            f"in x5c, got {got}"
        )
    try:
        # x5c is standard base64 (RFC 7517 section 4.7), not base64url.
        der = base64.b64decode(x5c[0], validate=True)
        cert = load_der_certificate(der)
    except (TypeError, ValueError, binascii.Error) as e:
        raise BundleError(f"spiffebundle: keys[{i}].x5c[0] is not a DER certificate: {e}") from None
    if any(p in jwk for p in _KEY_PARAMETERS):
        # go-jose refuses a JWK whose parameters disagree with its x5c certificate; a
        # bundle like that is corrupt or forged, so refuse it too.
        try:
            declared = public_key_from_jwk(jwk)
        except UnsupportedKeyTypeError as e:
            log_ignored_key("spiffebundle", i, jwk, str(e))
            return None
        except ValueError as e:
            raise BundleError(f"spiffebundle: keys[{i}]: {e}") from None
        try:
            certified = cert.public_key()
        except (ValueError, UnsupportedAlgorithm) as e:
            raise BundleError(
                f"spiffebundle: keys[{i}].x5c[0] has an unreadable public key: {e}"
            ) from None
        if declared != certified:
            raise BundleError(
                f"spiffebundle: keys[{i}]: key parameters do not match the x5c certificate"
            )
    return cert


@dataclass(frozen=True)
class SpiffeBundle:
    """All public key material of one trust domain, as a bundle endpoint serves it.

    Immutable; ``x509_bundle()`` and ``jwt_bundle()`` return views built once. A
    SpiffeBundle is itself an X.509 and JWT bundle source for its own trust domain.
    """

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...] = ()
    jwt_authorities: Mapping[str, PublicKeyTypes] = field(default_factory=dict)
    refresh_hint: timedelta | None = None
    sequence_number: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.trust_domain, TrustDomain):
            raise TypeError("trust_domain must be a TrustDomain")
        if self.refresh_hint is not None and self.refresh_hint < timedelta(0):
            raise BundleError(f"spiffebundle: refresh_hint cannot be negative: {self.refresh_hint}")
        seq = self.sequence_number
        if seq is not None and (isinstance(seq, bool) or not 0 <= seq <= _MAX_UINT64):
            raise BundleError(f"spiffebundle: sequence_number must be a uint64, got {seq!r}")
        authorities = dedupe_certificates(self.x509_authorities)
        jwt_authorities = freeze_authorities(self.jwt_authorities, "spiffebundle")
        object.__setattr__(self, "x509_authorities", authorities)
        object.__setattr__(self, "jwt_authorities", jwt_authorities)
        object.__setattr__(self, "_x509_view", X509Bundle(self.trust_domain, authorities))
        object.__setattr__(self, "_jwt_view", JwtBundle(self.trust_domain, jwt_authorities))

    def __hash__(self) -> int:
        return hash(
            (
                self.trust_domain,
                self.x509_authorities,
                frozenset(self.jwt_authorities),
                self.refresh_hint,
                self.sequence_number,
            )
        )

    @classmethod
    def parse(cls, trust_domain: TrustDomain, data: bytes | str) -> SpiffeBundle:
        """Parse a SPIFFE bundle document.

        Keys with an unknown ``use`` or ``kty`` (or curve) are skipped, as spec sections
        4.1.3, 4.2.1 and 4.2.2 require, and each is logged (``spire_fabric.identity``, one
        warning per key) so a peer publishing keys we cannot use is visible; go-spiffe's
        spiffebundle.Parse skips unknown uses the same way. A malformed key of a known kind
        is an error naming it.
        """
        doc, keys = load_jwks_document(data, "spiffebundle")
        hint = _optional_uint(doc, "spiffe_refresh_hint", _MAX_REFRESH_HINT)
        sequence = _optional_uint(doc, "spiffe_sequence", _MAX_UINT64)
        authorities: list[x509.Certificate] = []
        jwt_authorities: dict[str, PublicKeyTypes] = {}
        for i, raw in enumerate(keys):
            jwk = key_of_known_type("spiffebundle", i, raw)
            if jwk is None:
                continue
            use = jwk.get("use")
            if use not in (X509_SVID_USE, JWT_SVID_USE):
                log_ignored_key("spiffebundle", i, jwk, f"use {short(use)} is not a SPIFFE use")
                continue
            if use == X509_SVID_USE:
                cert = _x509_authority(i, jwk)
                if cert is not None:
                    authorities.append(cert)
            elif use == JWT_SVID_USE:
                kid = jwk.get("kid")
                if not isinstance(kid, str) or not kid:
                    raise BundleError(
                        f"spiffebundle: keys[{i}].kid is required for use {JWT_SVID_USE!r}"
                    )
                if kid in jwt_authorities:
                    raise BundleError(f"spiffebundle: keys[{i}].kid {kid!r} appears more than once")
                try:
                    jwt_authorities[kid] = public_key_from_jwk(jwk)
                except UnsupportedKeyTypeError as e:
                    log_ignored_key("spiffebundle", i, jwk, str(e))
                    continue
                except ValueError as e:
                    raise BundleError(f"spiffebundle: keys[{i}] (kid {kid!r}): {e}") from None
        return cls(
            trust_domain,
            tuple(authorities),
            jwt_authorities,
            refresh_hint=None if hint is None else timedelta(seconds=hint),
            sequence_number=sequence,
        )

    @classmethod
    def from_x509_bundle(cls, bundle: X509Bundle) -> SpiffeBundle:
        """A SPIFFE bundle holding only ``bundle``'s X.509 authorities."""
        return cls(bundle.trust_domain, bundle.x509_authorities)

    @classmethod
    def from_jwt_bundle(cls, bundle: JwtBundle) -> SpiffeBundle:
        """A SPIFFE bundle holding only ``bundle``'s JWT authorities."""
        return cls(bundle.trust_domain, jwt_authorities=bundle.jwt_authorities)

    def marshal(self) -> bytes:
        """Serialize as the spec's JWKS document (X.509 keys first, JWT keys by kid)."""
        keys: list[dict[str, Any]] = []
        for cert in self.x509_authorities:
            der = cert.public_bytes(serialization.Encoding.DER)
            keys.append(
                {
                    "use": X509_SVID_USE,
                    **jwk_from_public_key(cert.public_key()),
                    "x5c": [base64.b64encode(der).decode("ascii")],
                }
            )
        for kid, key in sorted(self.jwt_authorities.items()):
            keys.append({"use": JWT_SVID_USE, "kid": kid, **jwk_from_public_key(key)})
        doc: dict[str, Any] = {"keys": keys}
        if self.sequence_number is not None:
            doc["spiffe_sequence"] = self.sequence_number
        if self.refresh_hint is not None:
            # Whole seconds, rounded up like go-spiffe, so a hint never shrinks to 0.
            doc["spiffe_refresh_hint"] = math.ceil(self.refresh_hint.total_seconds())
        return json.dumps(doc).encode()

    def x509_bundle(self) -> X509Bundle:
        """The X.509 half, as an ``X509Bundle``."""
        view: X509Bundle = self._x509_view  # type: ignore[attr-defined]
        return view

    def jwt_bundle(self) -> JwtBundle:
        """The JWT half, as a ``JwtBundle``."""
        view: JwtBundle = self._jwt_view  # type: ignore[attr-defined]
        return view

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        """The X.509 half if this is ``trust_domain``'s bundle, else None."""
        return self.x509_bundle() if trust_domain == self.trust_domain else None

    def get_jwt_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> JwtBundle | None:
        """The JWT half if this is ``trust_domain``'s bundle, else None."""
        return self.jwt_bundle() if trust_domain == self.trust_domain else None

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.spiffe_bundle(self)

    def diff(self, other: object) -> BundleDiff:
        """What changed from this bundle to ``other`` (a later version of it): authorities
        added and removed, sequence number and refresh hint. Any bundle type of the same
        trust domain may be compared."""
        return diff_bundles(self, other)

    def __repr__(self) -> str:
        return (
            f"SpiffeBundle({self.trust_domain.name!r}, {len(self.x509_authorities)} x509, "
            f"kids=[{', '.join(sorted(self.jwt_authorities))}], "
            f"refresh_hint={self.refresh_hint}, sequence_number={self.sequence_number})"
        )
