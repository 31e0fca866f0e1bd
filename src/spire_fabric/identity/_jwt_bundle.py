"""JWT bundle: the JWT-SVID signing keys of one trust domain, by key ID."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ._bundle_diff import BundleDiff, diff_bundles
from ._errors import BundleError
from ._jwk import (
    KNOWN_KEY_TYPES,
    UnsupportedKeyTypeError,
    jwk_from_public_key,
    public_key_from_jwk,
    refuse_private_members,
)
from ._spiffe_id import TrustDomain
from ._strict_json import StrictJsonError, loads_strict

if TYPE_CHECKING:
    import spiffe

__all__ = ["JwtBundle"]

logger = logging.getLogger("spire_fabric.identity")

# A JWKS key that may sign JWTs: no "use" (a plain JWKS often has none), RFC 7517's
# "sig", or the SPIFFE bundle's "jwt-svid" (a SPIFFE bundle read as a plain JWKS).
_SIGNATURE_USES = (None, "sig", "jwt-svid")


def log_ignored_key(error_prefix: str, index: int, jwk: Mapping[str, Any], why: str) -> None:
    """One warning per key skipped under RFC 7517 section 5, naming the key and why, so an
    operator sees that a peer publishes keys we cannot use (and which ones)."""
    kid = jwk.get("kid")
    shown_kid = repr(kid[:64]) if isinstance(kid, str) else "none"
    logger.warning("%s: ignoring keys[%d] (kid %s): %s", error_prefix, index, shown_kid, why)


def key_of_known_type(error_prefix: str, index: int, jwk: object) -> dict[str, Any] | None:
    """``keys[index]`` if it is a key of a type we use, checked to hold no private material;
    None (logged) for an unknown ``kty``, which RFC 7517 section 5 says to ignore. A key
    that is not an object, or has no ``kty``, is an error naming its index."""
    if not isinstance(jwk, dict):
        raise BundleError(f"{error_prefix}: keys[{index}] must be a JSON object")
    kty = jwk.get("kty")
    if not isinstance(kty, str) or not kty:
        raise BundleError(f"{error_prefix}: keys[{index}].kty is required")
    if kty not in KNOWN_KEY_TYPES:
        log_ignored_key(error_prefix, index, jwk, f"key type (kty) {short(kty)} is not one we use")
        return None
    try:
        refuse_private_members(kty, jwk)
    except ValueError as e:
        raise BundleError(f"{error_prefix}: keys[{index}]: {e}") from None
    return jwk


def short(value: object) -> str:
    """A repr of a JWK member for a log line, never longer than ~40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def freeze_authorities(
    authorities: Mapping[str, PublicKeyTypes], error_prefix: str
) -> Mapping[str, PublicKeyTypes]:
    for kid in authorities:
        if not isinstance(kid, str) or not kid:
            raise BundleError(f"{error_prefix}: JWT authority key ID cannot be empty")
    return MappingProxyType(dict(authorities))


def load_jwks_document(data: bytes | str, error_prefix: str) -> tuple[dict[str, Any], list[Any]]:
    """Decode a JWKS and return it with its ``keys`` array, naming what is malformed.

    The JSON is read strictly (UTF-8, no BOM, no NaN, no duplicate member names): a
    bundle that two parties could read differently is not one trust statement.
    """
    if not isinstance(data, (bytes, bytearray, str)):
        raise TypeError(f"JWKS must be bytes or str, got {type(data).__name__}")
    try:
        doc = loads_strict(data)
    except StrictJsonError as e:
        raise BundleError(f"{error_prefix}: unable to parse JWKS: {e}") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{error_prefix}: JWKS must be a JSON object, got {type(doc).__name__}")
    # RFC 7517 section 5 and SPIFFE bundle spec 4.1.3: "keys" MUST be present.
    keys = doc.get("keys")
    if keys is None:
        raise BundleError(f"{error_prefix}: JWKS is missing the required 'keys' member")
    if not isinstance(keys, list):
        raise BundleError(f"{error_prefix}: 'keys' must be an array, got {type(keys).__name__}")
    return doc, keys


@dataclass(frozen=True)
class JwtBundle:
    """Immutable mapping of key ID to public key for one trust domain.

    A bundle is itself a JwtBundleSource that knows only its own trust domain.
    """

    trust_domain: TrustDomain
    jwt_authorities: Mapping[str, PublicKeyTypes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.trust_domain, TrustDomain):
            raise TypeError("trust_domain must be a TrustDomain")
        frozen = freeze_authorities(self.jwt_authorities, "jwtbundle")
        object.__setattr__(self, "jwt_authorities", frozen)

    def __hash__(self) -> int:
        # Public keys are not all hashable (EC keys are not); kids identify the content
        # well enough for hashing, equality still compares the keys.
        return hash((self.trust_domain, frozenset(self.jwt_authorities)))

    @classmethod
    def parse_jwks(cls, trust_domain: TrustDomain, data: bytes | str) -> JwtBundle:
        """Parse a JWKS (as the Workload API's FetchJWTBundles sends it).

        Keys we cannot use are ignored and logged (``spire_fabric.identity`` logger, one
        warning each), as RFC 7517 section 5 says a JWK Set reader SHOULD: a ``kty`` we do
        not know (``oct``, a future type), a curve we do not know, or a ``use`` other than
        signing. So a peer that adds a key of a new type does not break every JWT-SVID of
        its trust domain. go-spiffe agrees for ``oct`` (go-jose reads it as a symmetric key
        that can never verify a JWT-SVID); for a ``kty`` go-jose does not know at all it
        refuses the whole set, where we follow the RFC.

        A key of a type we do use is still read strictly: like go-spiffe's jwtbundle.Parse
        every key needs a ``kid``, and a key that cannot be read, or that carries private
        key material, is an error naming its index.
        """
        _, keys = load_jwks_document(data, "jwtbundle")
        authorities: dict[str, PublicKeyTypes] = {}
        for i, raw in enumerate(keys):
            jwk = key_of_known_type("jwtbundle", i, raw)
            if jwk is None:
                continue
            use = jwk.get("use")
            if use not in _SIGNATURE_USES:
                log_ignored_key("jwtbundle", i, jwk, f"use {short(use)} is not signature")
                continue
            kid = jwk.get("kid")
            if not isinstance(kid, str) or not kid:
                raise BundleError(f"jwtbundle: keys[{i}].kid is required")
            if kid in authorities:
                raise BundleError(f"jwtbundle: keys[{i}].kid {kid!r} appears more than once")
            try:
                authorities[kid] = public_key_from_jwk(jwk)
            except UnsupportedKeyTypeError as e:
                log_ignored_key("jwtbundle", i, jwk, str(e))
            except ValueError as e:
                raise BundleError(f"jwtbundle: keys[{i}] (kid {kid!r}): {e}") from None
        return cls(trust_domain, authorities)

    @classmethod
    def from_spiffe(cls, bundle: spiffe.JwtBundle) -> JwtBundle:
        """Convert from py-spiffe, re-validating the trust domain strictly."""
        return cls(TrustDomain.from_spiffe(bundle.trust_domain), bundle.jwt_authorities)

    def find_jwt_authority(self, key_id: str) -> PublicKeyTypes | None:
        """The public key with ``kid`` ``key_id``, or None."""
        return self.jwt_authorities.get(key_id)

    def to_jwks(self) -> bytes:
        """The keys as a JWK Set (RFC 7517), sorted by kid so the output is deterministic."""
        keys = [
            {"kid": kid, **jwk_from_public_key(key)}
            for kid, key in sorted(self.jwt_authorities.items())
        ]
        return json.dumps({"keys": keys}).encode()

    def to_spiffe(self) -> spiffe.JwtBundle:
        """The py-spiffe equivalent (``spiffe.JwtBundle``)."""
        import spiffe

        # py-spiffe types its authorities narrower than cryptography's PublicKeyTypes; a JWT
        # bundle only ever holds the signature key types it lists.
        authorities: dict[str, Any] = dict(self.jwt_authorities)
        return spiffe.JwtBundle(self.trust_domain.to_spiffe(), authorities)

    def get_jwt_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> JwtBundle | None:
        """This bundle if it is ``trust_domain``'s: a bundle is its own ``JwtBundleSource``."""
        return self if trust_domain == self.trust_domain else None

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.jwt_bundle(self)

    def diff(self, other: object) -> BundleDiff:
        """What changed from this bundle to ``other`` (a later version of it): authorities
        added and removed, sequence number and refresh hint. Any bundle type of the same
        trust domain may be compared."""
        return diff_bundles(self, other)

    def __repr__(self) -> str:
        kids = ", ".join(sorted(self.jwt_authorities))
        return f"JwtBundle({self.trust_domain.name!r}, kids=[{kids}])"
