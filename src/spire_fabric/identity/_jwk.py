"""JSON Web Key <-> cryptography public keys, and the base64 flavours JOSE uses.

Only what SPIFFE bundles carry: RSA, EC (P-256/384/521) and OKP Ed25519 public keys
(RFC 7517/7518/8037). Written against cryptography directly so bundle parsing and JWT
validation need no JOSE library.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

_URLSAFE_TO_STD = bytes.maketrans(b"-_", b"+/")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
# RFC 4648 section 3.5: the unused low bits of the last character are zero, so each octet
# string has exactly one encoding. With 2 characters in the last quantum 4 bits are
# unused (alphabet index a multiple of 16), with 3 characters 2 bits (a multiple of 4).
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}

_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
_CURVE_NAMES = {cls().name: (crv, size) for crv, (cls, size) in _CURVES.items()}

# Private (or secret) members per key type: RFC 7518 sections 6.2.2 and 6.3.2, RFC 8037
# section 2. A bundle publishes trust; a key that carries its private half is a leak.
_PRIVATE_MEMBERS = {
    "RSA": ("d", "p", "q", "dp", "dq", "qi", "oth"),
    "EC": ("d",),
    "OKP": ("d",),
}


class UnsupportedKeyTypeError(ValueError):
    """The JWK's ``kty`` (or curve) is one we do not know; SPIFFE says skip such keys."""


def _b64url_problem(s: str) -> str:
    """Why ``s`` is not unpadded, canonical base64url (only called once it failed)."""
    if "=" in s:
        return "'=' padding is not allowed (RFC 7515 section 2: base64url without padding)"
    if "+" in s or "/" in s:
        return "'+' and '/' are standard base64, not base64url (RFC 7515 section 2)"
    if not _B64URL_RE.fullmatch(s):
        return "character outside the base64url alphabet (RFC 4648 section 5)"
    if len(s) % 4 == 1:
        return "invalid base64url length"
    return (
        "non-canonical base64url: the unused bits of the last character are not zero "
        "(RFC 4648 section 3.5)"
    )


def b64url_is_canonical(s: str) -> bool:
    """True if ``s`` (already known to use only the base64url alphabet) has the one
    canonical unpadded spelling of its octets."""
    rem = len(s) % 4
    return rem == 0 or (rem != 1 and s[-1] in _CANONICAL_LAST[rem])


def b64url_decode_checked(s: str) -> bytes:
    """Decode ``s``, which the caller has already checked with :func:`b64url_is_canonical`
    and the base64url alphabet (the JWT parser matches all three parts with one regex)."""
    return binascii.a2b_base64(s.encode("ascii").translate(_URLSAFE_TO_STD) + b"=="[: -len(s) % 4])


def b64url_decode(s: str) -> bytes:
    """Decode unpadded base64url, refusing every other spelling of the same octets.

    RFC 7515 section 2 defines base64url as RFC 4648 section 5 with the padding omitted.
    Padding, the standard alphabet's ``+``/``/`` and non-zero unused bits would each give
    one value several encodings (go's RawURLEncoding also refuses the first two).
    """
    if not isinstance(s, str):
        raise ValueError(f"invalid base64url: expected a string, got {type(s).__name__}")
    if not (_B64URL_RE.fullmatch(s) and b64url_is_canonical(s)):
        raise ValueError(f"invalid base64url: {_b64url_problem(s)}")
    try:
        return b64url_decode_checked(s)
    except binascii.Error as e:  # unreachable after the checks above; kept as a backstop
        raise ValueError(f"invalid base64url: {e}") from None


def b64url_encode(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _octets(jwk: Mapping[str, Any], field: str) -> bytes:
    value = jwk.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field!r} is required (base64url string)")
    try:
        return b64url_decode(value)
    except ValueError as e:
        raise ValueError(f"{field!r}: {e}") from None


def _uint(jwk: Mapping[str, Any], field: str) -> int:
    return int.from_bytes(_octets(jwk, field), "big")


def _uint_bytes(n: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (n.bit_length() + 7) // 8)
    return b64url_encode(n.to_bytes(length, "big"))


def refuse_private_members(kty: str, jwk: Mapping[str, Any]) -> None:
    """ValueError if a key of type ``kty`` carries any of that type's private members."""
    present = [m for m in _PRIVATE_MEMBERS.get(kty, ()) if m in jwk]
    if present:
        raise ValueError(
            f"carries private key material ({', '.join(repr(m) for m in present)}); a bundle "
            "must hold public keys only"
        )


def _ec_coordinate(octets: bytes, field: str, crv: str, size: int) -> int:
    if len(octets) != size:
        # RFC 7518 sections 6.2.1.2/6.2.1.3: "The length of this octet string MUST be the
        # full size of a coordinate for the curve", leading zeros included (go-jose too).
        raise ValueError(
            f"{field!r} must be {size} octets for {crv} (RFC 7518 section 6.2.1), "
            f"got {len(octets)}"
        )
    return int.from_bytes(octets, "big")


def _ec_key(jwk: Mapping[str, Any]) -> PublicKeyTypes:
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in _CURVES:
        raise UnsupportedKeyTypeError(f"unsupported EC curve {crv!r}")
    curve_cls, size = _CURVES[crv]
    try:
        # Both read before either length is judged, so a missing one is named as such.
        x_octets, y_octets = _octets(jwk, "x"), _octets(jwk, "y")
        x = _ec_coordinate(x_octets, "x", crv, size)
        y = _ec_coordinate(y_octets, "y", crv, size)
        return ec.EllipticCurvePublicNumbers(x, y, curve_cls()).public_key()
    except ValueError as e:
        raise ValueError(f"invalid EC {crv} key: {e}") from None


def _okp_key(jwk: Mapping[str, Any]) -> PublicKeyTypes:
    crv = jwk.get("crv")
    if crv != "Ed25519":
        raise UnsupportedKeyTypeError(f"unsupported OKP curve {crv!r}")
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(_octets(jwk, "x"))
    except ValueError as e:
        raise ValueError(f"invalid Ed25519 key: {e}") from None


def _rsa_key(jwk: Mapping[str, Any]) -> PublicKeyTypes:
    try:
        return rsa.RSAPublicNumbers(_uint(jwk, "e"), _uint(jwk, "n")).public_key()
    except ValueError as e:
        raise ValueError(f"invalid RSA key: {e}") from None


_KEY_BUILDERS = {"RSA": _rsa_key, "EC": _ec_key, "OKP": _okp_key}
KNOWN_KEY_TYPES = frozenset(_KEY_BUILDERS)
"""The ``kty`` values we read; a JWK Set reader skips the others (RFC 7517 section 5)."""


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKeyTypes:
    """Build the public key a JWK describes; ValueError names the missing or bad field.

    A key of a known type that also carries private members is refused rather than
    stripped: whoever published it leaked the private key, and its use is compromised.
    """
    kty = jwk.get("kty")
    if not isinstance(kty, str) or not kty:
        raise ValueError("'kty' is required")
    build = _KEY_BUILDERS.get(kty)
    if build is None:
        raise UnsupportedKeyTypeError(f"unsupported key type {kty!r}")
    refuse_private_members(kty, jwk)
    return build(jwk)


def jwk_from_public_key(key: PublicKeyTypes) -> dict[str, str]:
    """The JWK members (kty and key parameters) for a public key."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _uint_bytes(numbers.n), "e": _uint_bytes(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_NAMES:
            raise ValueError(f"EC curve {key.curve.name} has no JWK name")
        crv, size = _CURVE_NAMES[key.curve.name]
        ec_numbers = key.public_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": _uint_bytes(ec_numbers.x, size),
            "y": _uint_bytes(ec_numbers.y, size),
        }
    if isinstance(key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives import serialization

        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    raise ValueError(f"cannot express a {type(key).__name__} as a JWK")
