"""JWT-SVID parsing and validation (https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md).

Behaves like go-spiffe ``jwtsvid.ParseAndValidate``: the key is looked up in the JWT
bundle of the trust domain named by the token's own ``sub``, by ``kid``; only asymmetric
algorithms are accepted; ``exp`` is required; ``aud`` must contain an expected audience.
Written on cryptography directly (base64 + json + one signature check): no JOSE library
dependency, and no key re-serialization per call as py-spiffe does, so it is fast enough
to run per request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ._bundle_source import JwtBundleSource
from ._errors import JwtSvidError, SpiffeIdError
from ._jwk import b64url_decode
from ._spiffe_id import SpiffeId

if TYPE_CHECKING:
    import spiffe

__all__ = ["JwtSvid", "parse_and_validate_jwt_svid", "parse_insecure_jwt_svid"]

# go-jose's jwt.DefaultLeeway, which go-spiffe inherits: tolerated clock skew for exp/nbf/iat.
CLOCK_SKEW_LEEWAY_SECONDS = 60.0

_PKCS1 = padding.PKCS1v15()
_SHA = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
_EC_CURVE_FOR_ALG = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_EC_COORDINATE_BYTES = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}

_Verifier = Callable[[PublicKeyTypes, bytes, bytes], None]


def _rsa_verifier(pad: padding.AsymmetricPadding, digest: hashes.HashAlgorithm) -> _Verifier:
    def verify(key: PublicKeyTypes, signature: bytes, data: bytes) -> None:
        if not isinstance(key, rsa.RSAPublicKey):
            raise _KeyMismatch(f"needs an RSA key, the authority is {_key_kind(key)}")
        key.verify(signature, data, pad, digest)

    return verify


def _ec_verifier(alg: str, digest: hashes.HashAlgorithm) -> _Verifier:
    curve = _EC_CURVE_FOR_ALG[alg]
    size = _EC_COORDINATE_BYTES[curve]
    algorithm = ec.ECDSA(digest)

    def verify(key: PublicKeyTypes, signature: bytes, data: bytes) -> None:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            raise _KeyMismatch(f"needs an EC {curve} key, the authority is {_key_kind(key)}")
        # JWS carries ECDSA signatures as raw r||s (RFC 7518 section 3.4), not DER.
        if len(signature) != 2 * size:
            raise InvalidSignature()
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        key.verify(encode_dss_signature(r, s), data, algorithm)

    return verify


def _pss(digest: hashes.HashAlgorithm) -> padding.PSS:
    # RFC 7518 section 3.5: salt length equals the hash output length.
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)


_VERIFIERS: dict[str, _Verifier] = {
    **{f"RS{n}": _rsa_verifier(_PKCS1, h) for n, h in _SHA.items()},
    **{f"PS{n}": _rsa_verifier(_pss(h), h) for n, h in _SHA.items()},
    **{f"ES{n}": _ec_verifier(f"ES{n}", h) for n, h in _SHA.items()},
}
_ALLOWED = ", ".join(_VERIFIERS)


class _KeyMismatch(Exception):
    pass


def _key_kind(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    return type(key).__name__


def _fail(reason: str) -> JwtSvidError:
    return JwtSvidError(f"jwtsvid: {reason}")


@dataclass(frozen=True)
class JwtSvid:
    """A parsed JWT-SVID. ``token`` is kept out of repr: it is a bearer credential."""

    token: str = field(repr=False)
    spiffe_id: SpiffeId
    audience: tuple[str, ...]
    expiry: datetime
    claims: Mapping[str, Any] = field(compare=False, repr=False)
    hint: str = ""

    def marshal(self) -> str:
        """The token exactly as it was parsed."""
        return self.token

    def to_spiffe(self) -> spiffe.JwtSvid:
        import spiffe

        return spiffe.JwtSvid(
            self.spiffe_id.to_spiffe(),
            set(self.audience),
            int(self.expiry.timestamp()),
            dict(self.claims),
            self.token,
        )


def _decode_json(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(f"unable to parse JWT token: {what} is not base64url JSON: {e}") from None
    if not isinstance(value, dict):
        raise _fail(f"unable to parse JWT token: {what} must be a JSON object")
    return value


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expected_audience(audience: Iterable[str]) -> tuple[str, ...]:
    # A bare string would otherwise iterate as characters and match almost anything.
    expected = (audience,) if isinstance(audience, str) else tuple(audience)
    if not expected:
        raise _fail("at least one expected audience is required")
    return expected


def _parse(
    token: str,
    expected: tuple[str, ...],
    bundle_source: JwtBundleSource | None,
    now: datetime | None,
) -> JwtSvid:
    if not token:
        raise _fail("token is empty")
    parts = token.split(".")
    if len(parts) != 3:
        raise _fail(
            f"unable to parse JWT token: expected 3 dot-separated parts (JWS compact "
            f"serialization), got {len(parts)}"
        )
    header = _decode_json(parts[0], "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise _fail("token header missing 'alg'")
    if alg not in _VERIFIERS:
        if alg.lower() == "none":
            raise _fail(f"unsigned token (alg 'none') is not accepted; expected one of {_ALLOWED}")
        if alg.upper().startswith("HS"):
            raise _fail(
                f"HMAC algorithm {alg!r} is not accepted: JWT-SVIDs are signed with asymmetric "
                f"keys; expected one of {_ALLOWED}"
            )
        raise _fail(f"unsupported token algorithm {alg!r}; expected one of {_ALLOWED}")
    typ = header.get("typ")
    if typ is not None and typ not in ("JWT", "JOSE"):
        raise _fail(f"token header type {typ!r} is not 'JWT' or 'JOSE'")
    if "crit" in header:
        raise _fail(f"token header has unsupported critical parameters {header['crit']!r}")

    claims = _decode_json(parts[1], "payload")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise _fail("token missing subject claim")
    exp = claims.get("exp")
    if exp is None:
        raise _fail("token missing exp claim")
    if not _number(exp):
        raise _fail(f"token exp claim must be a number, got {exp!r}")
    try:
        spiffe_id = SpiffeId.parse(sub)
    except SpiffeIdError as e:
        raise _fail(f"token has an invalid subject claim: {e}") from None

    if bundle_source is not None:
        _verify_signature(parts, header, alg, spiffe_id, bundle_source)

    now_ts = time.time() if now is None else now.timestamp()
    if now_ts - CLOCK_SKEW_LEEWAY_SECONDS > exp:
        expired = datetime.fromtimestamp(exp, tz=timezone.utc).isoformat()
        raise _fail(f"token has expired (exp {expired})")
    nbf = claims.get("nbf")
    if _number(nbf) and now_ts + CLOCK_SKEW_LEEWAY_SECONDS < nbf:
        raise _fail("token is not valid yet (nbf is in the future)")
    iat = claims.get("iat")
    if _number(iat) and now_ts + CLOCK_SKEW_LEEWAY_SECONDS < iat:
        raise _fail("token issued in the future (iat)")

    aud = claims.get("aud")
    if isinstance(aud, str):
        actual: tuple[str, ...] = (aud,)
    elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        actual = tuple(aud)
    elif aud is None:
        actual = ()
    else:
        raise _fail(f"token aud claim must be a string or an array of strings, got {aud!r}")
    if not any(a in actual for a in expected):
        raise _fail(f"expected audience in {list(expected)!r} (audience={list(actual)!r})")

    return JwtSvid(
        token=token,
        spiffe_id=spiffe_id,
        audience=actual,
        expiry=datetime.fromtimestamp(exp, tz=timezone.utc),
        claims=claims,
    )


def _verify_signature(
    parts: list[str],
    header: Mapping[str, Any],
    alg: str,
    spiffe_id: SpiffeId,
    bundle_source: JwtBundleSource,
) -> None:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _fail("token header missing key id")
    td = spiffe_id.trust_domain
    bundle = bundle_source.get_jwt_bundle_for_trust_domain(td)
    if bundle is None:
        raise _fail(f"no bundle found for trust domain {td.name!r}")
    if bundle.trust_domain != td:
        raise _fail(
            f"bundle source returned the bundle of {bundle.trust_domain.name!r} for trust "
            f"domain {td.name!r}"
        )
    key = bundle.find_jwt_authority(kid)
    if key is None:
        raise _fail(f"no JWT authority {kid!r} found for trust domain {td.name!r}")
    try:
        signature = b64url_decode(parts[2])
    except ValueError as e:
        raise _fail(f"unable to parse JWT token: signature: {e}") from None
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
    try:
        _VERIFIERS[alg](key, signature, signing_input)
    except InvalidSignature:
        raise _fail(
            f"unable to get claims from token: signature verification failed (alg {alg}, "
            f"kid {kid!r}, trust domain {td.name!r})"
        ) from None
    except _KeyMismatch as e:
        raise _fail(f"token alg {alg} does not fit JWT authority {kid!r}: {e}") from None


def parse_and_validate_jwt_svid(
    token: str,
    bundle_source: JwtBundleSource,
    audience: Iterable[str],
    *,
    now: datetime | None = None,
) -> JwtSvid:
    """Parse a JWT-SVID and validate signature, expiry and audience.

    The signing key is found by ``kid`` in the JWT bundle of the ``sub`` ID's own trust
    domain, so a key of another (even federated) trust domain cannot sign for it.
    ``audience`` must be non-empty; the token must name at least one of its entries.
    """
    return _parse(token, _expected_audience(audience), bundle_source, now)


def parse_insecure_jwt_svid(
    token: str, audience: Iterable[str], *, now: datetime | None = None
) -> JwtSvid:
    """Parse a JWT-SVID and check its claims WITHOUT verifying the signature.

    Only for tokens from a trusted channel (the Workload API handing a workload its own
    SVID); never for tokens received from a peer.
    """
    return _parse(token, _expected_audience(audience), None, now)
