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
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ._errors import JwtSvidError, SpiffeIdError
from ._jwk import b64url_decode, b64url_decode_checked, b64url_is_canonical
from ._sources import JwtBundleSource
from ._spiffe_id import SpiffeId
from ._strict_json import NonFiniteNumberError, StrictJsonError, loads_strict

if TYPE_CHECKING:
    import spiffe

__all__ = ["JwtSvid", "parse_insecure_jwt_svid"]

# go-jose's jwt.DefaultLeeway, which go-spiffe inherits: tolerated clock skew for exp/nbf/iat.
CLOCK_SKEW_LEEWAY_SECONDS = 60.0

# JWS compact serialization (RFC 7515 section 7.1): three base64url parts. One regex both
# splits the token and checks every character, so valid tokens pay for a single scan.
_TOKEN_RE = re.compile(r"([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)")
_PART_NAMES = ("header", "payload", "signature")

# A NumericDate (RFC 7519 section 2) must fit a datetime: years 1 through 9999 UTC. go's
# time.Time reaches further, but a token valid until the year 10000 is no token anyone
# minted on purpose, and refusing it keeps OverflowError out of every caller.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_NUMERIC_DATE = -62135596800  # 0001-01-01T00:00:00Z
_MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z
# RFC 7519 section 4.1: the registered claims and their types.
_STRING_CLAIMS = (("iss", "4.1.1"), ("sub", "4.1.2"), ("jti", "4.1.7"))
_DATE_CLAIMS = (("exp", "4.1.4"), ("nbf", "4.1.5"), ("iat", "4.1.6"))
_SHOWN = 60

# Parsed, already validated headers by their base64url text, and SPIFFE IDs by subject.
# A workload's tokens share one header and one sub, so these skip a base64 decode, a JSON
# decode and an ID parse per validation. Each value is a pure function of its key (and
# immutable), so a cached answer is the answer; only input that parsed enters, and a full
# cache is emptied, so hostile tokens can cost a re-parse but never memory.
_CACHE_SIZE = 256

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

    def __repr__(self) -> str:
        expires = self.expiry.strftime("%Y-%m-%d %H:%M:%S UTC")
        audience = list(self.audience)
        return f"JwtSvid({str(self.spiffe_id)!r}, audience={audience!r}, expires {expires})"

    def marshal(self) -> str:
        """The token exactly as it was parsed."""
        return self.token

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.jwt_svid(self)

    def to_spiffe(self) -> spiffe.JwtSvid:
        """The py-spiffe equivalent (``spiffe.JwtSvid``), same token and claims."""
        import spiffe

        return spiffe.JwtSvid(
            self.spiffe_id.to_spiffe(),
            set(self.audience),
            int(self.expiry.timestamp()),
            dict(self.claims),
            self.token,
        )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _split(token: str) -> tuple[str, str, str]:
    """The three parts of a compact JWS, each checked as canonical unpadded base64url."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, got {type(token).__name__}")
    if not token:
        raise _fail("token is empty")
    m = _TOKEN_RE.fullmatch(token)
    if m is not None:
        header, payload, signature = m.groups()
        if (
            b64url_is_canonical(header)
            and b64url_is_canonical(payload)
            and b64url_is_canonical(signature)
        ):
            return header, payload, signature
    parts = token.split(".")
    if len(parts) != 3:
        raise _fail(
            f"unable to parse JWT token: expected 3 dot-separated parts (JWS compact "
            f"serialization), got {len(parts)}"
        )
    for part, what in zip(parts, _PART_NAMES, strict=True):
        try:
            b64url_decode(part)
        except ValueError as e:
            if what == "signature":
                raise _fail(f"unable to parse JWT token: signature: {e}") from None
            raise _fail(f"unable to parse JWT token: {what} is not base64url JSON: {e}") from None
    raise AssertionError(f"JWS part checks disagree on {token[:_SHOWN]!r}")  # pragma: no cover


def _name_non_finite_date(raw: bytes) -> None:
    """Raise naming the date claim that is NaN, Infinity or beyond double range, if any.

    Only runs once strict parsing has refused such a number somewhere in the payload; the
    lenient re-parse (depth and UTF-8 already checked) finds out whether it was a date.
    """
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return
    if not isinstance(doc, dict):
        return
    for name, section in _DATE_CLAIMS:
        value = doc.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(
                f"token {name} claim must be a finite NumericDate (RFC 7519 section "
                f"{section}; RFC 8259 section 6 has no NaN or Infinity), got {value}"
            )


def _decode_json(segment: str, what: str) -> dict[str, Any]:
    raw = b64url_decode_checked(segment)
    try:
        value = loads_strict(raw)
    except StrictJsonError as e:
        if isinstance(e, NonFiniteNumberError) and what == "payload":
            _name_non_finite_date(raw)
        raise _fail(f"unable to parse JWT token: {what} is not base64url JSON: {e}") from None
    if not isinstance(value, dict):
        raise _fail(f"unable to parse JWT token: {what} must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class _Header:
    alg: str
    kid: str | None


_HEADER_CACHE: dict[str, _Header] = {}


def _check_alg(alg: object) -> str:
    if not isinstance(alg, str) or not alg:
        raise _fail("token header missing 'alg'")
    if alg not in _VERIFIERS:
        if alg.lower() == "none":
            raise _fail(f"unsigned token (alg 'none') is not accepted; expected one of {_ALLOWED}")
        if alg.upper().startswith("HS"):
            raise _fail(
                f"HMAC algorithm {_shown(alg)} is not accepted: JWT-SVIDs are signed with "
                f"asymmetric keys; expected one of {_ALLOWED}"
            )
        raise _fail(f"unsupported token algorithm {_shown(alg)}; expected one of {_ALLOWED}")
    return alg


def _parse_header(segment: str) -> _Header:
    header = _decode_json(segment, "header")
    alg = _check_alg(header.get("alg"))
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _fail(
            f"token header kid must be a string (RFC 7515 section 4.1.4), got {_shown(kid)}"
        )
    typ = header.get("typ")
    if typ is not None and typ not in ("JWT", "JOSE"):
        raise _fail(f"token header type {_shown(typ)} is not 'JWT' or 'JOSE'")
    if "crit" in header:
        # RFC 7515 section 4.1.11: we understand no extension, so none can be critical.
        raise _fail(f"token header has unsupported critical parameters {_shown(header['crit'])}")
    return _Header(alg, kid)


def _header(segment: str) -> _Header:
    cached = _HEADER_CACHE.get(segment)
    if cached is not None:
        return cached
    parsed = _parse_header(segment)
    if len(_HEADER_CACHE) >= _CACHE_SIZE:
        _HEADER_CACHE.clear()
    _HEADER_CACHE[segment] = parsed
    return parsed


_SUBJECT_CACHE: dict[str, SpiffeId] = {}


def _subject(sub: str) -> SpiffeId:
    spiffe_id = _SUBJECT_CACHE.get(sub)
    if spiffe_id is not None:
        return spiffe_id
    try:
        spiffe_id = SpiffeId.parse(sub)
    except SpiffeIdError as e:
        raise _fail(f"token has an invalid subject claim: {e}") from None
    if len(_SUBJECT_CACHE) >= _CACHE_SIZE:
        _SUBJECT_CACHE.clear()
    _SUBJECT_CACHE[sub] = spiffe_id
    return spiffe_id


def _check_registered_claims(claims: Mapping[str, Any]) -> None:
    """RFC 7519 section 4.1 fixes the type of each registered claim; go-jose refuses a
    claim of another type, and so do we instead of skipping the check it feeds."""
    for name, section in _STRING_CLAIMS:
        value = claims.get(name)
        if value is not None and type(value) is not str:
            raise _fail(
                f"token {name} claim must be a string (RFC 7519 section {section}), "
                f"got {_shown(value)}"
            )
    for name, section in _DATE_CLAIMS:
        value = claims.get(name)
        if value is None:
            continue
        # bool is an int to Python, but `true` is not a number to JSON.
        if type(value) is not int and type(value) is not float:
            raise _fail(
                f"token {name} claim must be a NumericDate, a JSON number of seconds since "
                f"the epoch (RFC 7519 section {section}), got {_shown(value)}"
            )
        if not _MIN_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE:
            raise _fail(
                f"token {name} claim {_shown(value)} is out of range: a NumericDate must "
                "fall in the years 1 to 9999"
            )


def _audience(claims: Mapping[str, Any]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if type(aud) is str:
        return (aud,)
    if type(aud) is list and all(type(a) is str for a in aud):
        return tuple(aud)
    if aud is None:
        return ()
    raise _fail(
        "token aud claim must be a string or an array of strings (RFC 7519 section 4.1.3), "
        f"got {_shown(aud)}"
    )


def _expected_audience(audience: Iterable[str]) -> tuple[str, ...]:
    # A bare string would otherwise iterate as characters and match almost anything.
    expected = (audience,) if isinstance(audience, str) else tuple(audience)
    if not expected:
        raise _fail("at least one expected audience is required")
    return expected


def _check_times(claims: Mapping[str, Any], exp: float, now: datetime | None) -> None:
    now_ts = time.time() if now is None else now.timestamp()
    if now_ts - CLOCK_SKEW_LEEWAY_SECONDS > exp:
        expired = (_EPOCH + timedelta(seconds=exp)).isoformat()
        raise _fail(f"token has expired (exp {expired})")
    nbf = claims.get("nbf")
    if nbf is not None and now_ts + CLOCK_SKEW_LEEWAY_SECONDS < nbf:
        raise _fail("token is not valid yet (nbf is in the future)")
    iat = claims.get("iat")
    if iat is not None and now_ts + CLOCK_SKEW_LEEWAY_SECONDS < iat:
        raise _fail("token issued in the future (iat)")


def _parse(
    token: str,
    expected: tuple[str, ...],
    bundle_source: JwtBundleSource | None,
    now: datetime | None,
) -> JwtSvid:
    header_part, payload_part, signature_part = _split(token)
    header = _HEADER_CACHE.get(header_part) or _header(header_part)
    claims = _decode_json(payload_part, "payload")
    _check_registered_claims(claims)
    sub = claims.get("sub")
    if not sub:
        raise _fail("token missing subject claim")
    exp = claims.get("exp")
    if exp is None:
        raise _fail("token missing exp claim")
    spiffe_id = _SUBJECT_CACHE.get(sub) or _subject(sub)

    if bundle_source is not None:
        signing_input = token[: len(header_part) + 1 + len(payload_part)]
        _verify_signature(signing_input, signature_part, header, spiffe_id, bundle_source)

    _check_times(claims, exp, now)
    actual = _audience(claims)
    for a in expected:
        if a in actual:
            break
    else:
        raise _fail(f"expected audience in {list(expected)!r} (audience={_shown(list(actual))})")

    return JwtSvid(
        token=token,
        spiffe_id=spiffe_id,
        audience=actual,
        expiry=_EPOCH + timedelta(seconds=exp),
        claims=claims,
    )


def _verify_signature(
    signing_input: str,
    signature_part: str,
    header: _Header,
    spiffe_id: SpiffeId,
    bundle_source: JwtBundleSource,
) -> None:
    kid = header.kid
    if not kid:
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
        raise _fail(f"no JWT authority {_shown(kid)} found for trust domain {td.name!r}")
    alg = header.alg
    try:
        # Both parts were checked by _split: ASCII, canonical base64url.
        _VERIFIERS[alg](key, b64url_decode_checked(signature_part), signing_input.encode())
    except InvalidSignature:
        raise _fail(
            f"unable to get claims from token: signature verification failed (alg {alg}, "
            f"kid {_shown(kid)}, trust domain {td.name!r})"
        ) from None
    except _KeyMismatch as e:
        raise _fail(f"token alg {alg} does not fit JWT authority {_shown(kid)}: {e}") from None


def parse_insecure_jwt_svid(
    token: str, audience: Iterable[str], *, now: datetime | None = None
) -> JwtSvid:
    """Parse a JWT-SVID and check its claims WITHOUT verifying the signature.

    Only for tokens from a trusted channel (the Workload API handing a workload its own
    SVID); never for tokens received from a peer.
    """
    return _parse(token, _expected_audience(audience), None, now)
