"""A JWK Set reader ignores what it does not understand (RFC 7517 section 5), and says so.

One key of a type we do not use (an ``oct`` HMAC key, a future ``kty``, an encryption
key) must not reject the whole bundle: every JWT-SVID of that trust domain would fail, and
a peer adding a new key type would break our federation (issue 26). Keys of the types we
do use stay strict.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from spire_fabric.identity import (
    BundleError,
    JwtBundle,
    JwtSvidError,
    SpiffeBundle,
    TrustDomain,
    parse_and_validate_jwt_svid,
)
from spire_fabric.identity._jwk import b64url_encode, jwk_from_public_key

from ._jws import sign_token

TD = TrustDomain("example.org")
OCT = {"kty": "oct", "kid": "hmac-1", "k": b64url_encode(b"a shared secret of 32 bytes....")}


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _token(key: Any, kid: str, alg: str = "ES256") -> str:
    claims = {"sub": "spiffe://example.org/web", "aud": ["db"], "exp": int(time.time()) + 300}
    return sign_token({"alg": alg, "kid": kid, "typ": "JWT"}, claims, key)


def _jwks(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


def _ignored(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "spire_fabric.identity" and r.levelno == logging.WARNING
    ]


def test_a_jwks_with_an_oct_key_still_validates_tokens_of_its_ec_key(
    ec_key: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    ec_jwk = {"kid": "ec-1", **jwk_from_public_key(ec_key.public_key())}
    bundle = JwtBundle.parse_jwks(TD, _jwks(OCT, ec_jwk))

    assert set(bundle.jwt_authorities) == {"ec-1"}
    svid = parse_and_validate_jwt_svid(_token(ec_key, "ec-1"), bundle, ["db"])
    assert str(svid.spiffe_id) == "spiffe://example.org/web"
    assert _ignored(caplog) == [
        "jwtbundle: ignoring keys[0] (kid 'hmac-1'): key type (kty) 'oct' is not one we use"
    ]


def test_the_ignored_oct_key_verifies_nothing(ec_key: ec.EllipticCurvePrivateKey) -> None:
    ec_jwk = {"kid": "ec-1", **jwk_from_public_key(ec_key.public_key())}
    bundle = JwtBundle.parse_jwks(TD, _jwks(OCT, ec_jwk))
    forged = _token(b"a shared secret of 32 bytes....", "hmac-1", alg="HS256")
    with pytest.raises(JwtSvidError):
        parse_and_validate_jwt_svid(forged, bundle, ["db"])


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"kty": "AKP", "kid": "pq-1", "pub": "AAAA"}, "key type (kty) 'AKP' is not one we use"),
        (
            {"kty": "EC", "kid": "p192", "crv": "P-192", "x": "AA", "y": "AA"},
            "unsupported EC curve",
        ),
        ({"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": "AA"}, "unsupported OKP curve"),
    ],
)
def test_unknown_key_types_and_curves_are_ignored_and_logged(
    ec_key: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
    extra: dict[str, Any],
    why: str,
) -> None:
    ec_jwk = {"kid": "ec-1", **jwk_from_public_key(ec_key.public_key())}
    bundle = JwtBundle.parse_jwks(TD, _jwks(ec_jwk, extra))
    assert set(bundle.jwt_authorities) == {"ec-1"}
    (message,) = _ignored(caplog)
    assert message.startswith(f"jwtbundle: ignoring keys[1] (kid {extra['kid']!r}): {why}")


def test_an_encryption_key_is_ignored_but_signature_uses_are_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = {u: ec.generate_private_key(ec.SECP256R1()).public_key() for u in ("enc", "sig", "jwt")}
    doc = _jwks(
        {"kid": "enc-1", "use": "enc", **jwk_from_public_key(keys["enc"])},
        {"kid": "sig-1", "use": "sig", **jwk_from_public_key(keys["sig"])},
        {"kid": "svid-1", "use": "jwt-svid", **jwk_from_public_key(keys["jwt"])},
    )
    bundle = JwtBundle.parse_jwks(TD, doc)
    assert set(bundle.jwt_authorities) == {"sig-1", "svid-1"}
    assert _ignored(caplog) == [
        "jwtbundle: ignoring keys[0] (kid 'enc-1'): use 'enc' is not signature"
    ]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"kid": "no-kty"}, r"keys\[1\]\.kty is required"),
        ({"kty": "EC", "kid": "no-y", "crv": "P-256", "x": "A" * 43}, r"'y' is required"),
        ({"kty": "RSA", "kid": "no-n", "e": "AQAB"}, r"'n' is required"),
        (
            {"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43},
            r"keys\[1\]\.kid is required",
        ),
        ({"kty": "EC", "use": "enc", "kid": "leak", "d": "AA"}, "carries private key material"),
    ],
)
def test_malformed_keys_of_types_we_use_are_still_refused(
    ec_key: ec.EllipticCurvePrivateKey, bad: dict[str, Any], error: str
) -> None:
    ec_jwk = {"kid": "ec-1", **jwk_from_public_key(ec_key.public_key())}
    with pytest.raises(BundleError, match=error):
        JwtBundle.parse_jwks(TD, _jwks(ec_jwk, bad))


def test_spiffe_bundle_logs_each_key_it_ignores(
    ec_key: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    doc = _jwks(
        {"use": "jwt-svid", **OCT},
        {"use": "wit-svid", "kid": "wit-1", **jwk_from_public_key(rsa_key)},
        {"use": "jwt-svid", "kid": "ec-1", **jwk_from_public_key(ec_key.public_key())},
    )
    bundle = SpiffeBundle.parse(TD, doc)
    assert set(bundle.jwt_authorities) == {"ec-1"}
    assert parse_and_validate_jwt_svid(_token(ec_key, "ec-1"), bundle, ["db"])
    assert _ignored(caplog) == [
        "spiffebundle: ignoring keys[0] (kid 'hmac-1'): key type (kty) 'oct' is not one we use",
        "spiffebundle: ignoring keys[1] (kid 'wit-1'): use 'wit-svid' is not a SPIFFE use",
    ]
