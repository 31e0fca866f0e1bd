"""Bundles from a federation endpoint or the Workload API are hostile input too.

JWKs follow RFC 7517/7518 to the letter (full-length EC coordinates, canonical
base64url, public members only) and the JSON is as strict as for tokens.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from spire_fabric.identity import BundleError, JwtBundle, SpiffeBundle, TrustDomain, X509Bundle
from spire_fabric.identity._jwk import b64url_encode, jwk_from_public_key

from ._pki import make_ca

TD = TrustDomain("example.org")
Parse = Callable[[list[dict[str, Any]]], object]


def _parse_jwt_bundle(keys: list[dict[str, Any]]) -> object:
    return JwtBundle.parse_jwks(TD, json.dumps({"keys": keys}))


def _parse_spiffe_bundle(keys: list[dict[str, Any]]) -> object:
    return SpiffeBundle.parse(TD, json.dumps({"keys": [{"use": "jwt-svid", **k} for k in keys]}))


PARSERS = pytest.mark.parametrize(
    "parse", [_parse_jwt_bundle, _parse_spiffe_bundle], ids=["jwtbundle", "spiffebundle"]
)


def _key_with_short_x(curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    """A key whose x coordinate has a leading zero octet (1 key in 256)."""
    while True:
        key = ec.generate_private_key(curve).public_key()
        if key.public_numbers().x.bit_length() <= (key.curve.key_size + 7) // 8 * 8 - 8:
            return key


def _jwk(key, kid: str = "k") -> dict[str, Any]:
    return {"kid": kid, **jwk_from_public_key(key)}


# --- RFC 7518 section 6.2.1.2: EC coordinates are full length ------------------------


@PARSERS
@pytest.mark.parametrize(
    ("curve", "size"), [(ec.SECP256R1(), 32), (ec.SECP384R1(), 48), (ec.SECP521R1(), 66)]
)
def test_rfc7518_s6_2_1_2_short_ec_coordinate_is_refused(parse: Parse, curve, size):
    key = _key_with_short_x(curve)
    jwk = _jwk(key)
    assert parse([jwk]) is not None  # the full-length spelling is fine
    minimal = key.public_numbers().x.to_bytes(size - 1, "big")
    with pytest.raises(BundleError, match=rf"'x' must be {size} octets .*RFC 7518 section 6.2.1"):
        parse([{**jwk, "x": b64url_encode(minimal)}])


@PARSERS
def test_rfc7518_s6_2_1_3_over_long_ec_coordinate_is_refused(parse: Parse):
    jwk = _jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    longer = b"\x00" + base64.urlsafe_b64decode(jwk["y"] + "=")
    with pytest.raises(BundleError, match=r"'y' must be 32 octets .*got 33"):
        parse([{**jwk, "y": b64url_encode(longer)}])


def test_short_coordinate_of_an_x509_authority_key_is_refused():
    ca = make_ca("example.org", key=ec.generate_private_key(ec.SECP256R1()))
    doc = json.loads(SpiffeBundle(TD, (ca.cert,)).marshal())
    x = base64.urlsafe_b64decode(doc["keys"][0]["x"] + "=")
    doc["keys"][0]["x"] = b64url_encode(b"\x00" + x)
    with pytest.raises(BundleError, match=r"keys\[0\]: invalid EC P-256 key: 'x' must be 32"):
        SpiffeBundle.parse(TD, json.dumps(doc))


# --- a bundle never carries private keys (RFC 7518 6.2.2 / 6.3.2, RFC 8037 2) --------


def _private_jwk(private_key) -> dict[str, Any]:
    """The private JWK members of a key, as a careless publisher would leak them."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        size = (private_key.curve.key_size + 7) // 8
        d = private_key.private_numbers().private_value.to_bytes(size, "big")
        return {"d": b64url_encode(d)}
    if isinstance(private_key, rsa.RSAPrivateKey):
        n = private_key.private_numbers()
        return {
            "d": b64url_encode(n.d.to_bytes((n.d.bit_length() + 7) // 8, "big")),
            "p": b64url_encode(n.p.to_bytes((n.p.bit_length() + 7) // 8, "big")),
        }
    raw = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return {"d": b64url_encode(raw)}


@PARSERS
@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: rsa.generate_private_key(65537, 2048),
        ed25519.Ed25519PrivateKey.generate,
    ],
    ids=["EC", "RSA", "OKP"],
)
def test_jwk_with_private_key_material_is_refused(parse: Parse, make_key):
    private_key = make_key()
    jwk = {**_jwk(private_key.public_key()), **_private_jwk(private_key)}
    with pytest.raises(BundleError, match=r"carries private key material \('d'"):
        parse([jwk])


def test_x509_authority_with_private_key_material_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    doc = json.loads(SpiffeBundle(TD, (make_ca("example.org", key=key).cert,)).marshal())
    doc["keys"][0].update(_private_jwk(key))
    with pytest.raises(BundleError, match=r"keys\[0\]: carries private key material"):
        SpiffeBundle.parse(TD, json.dumps(doc))


def test_private_key_of_unknown_use_is_refused_too():
    key = ec.generate_private_key(ec.SECP256R1())
    entry = {"use": "wit-svid", **_jwk(key.public_key()), **_private_jwk(key)}
    with pytest.raises(BundleError, match="carries private key material"):
        SpiffeBundle.parse(TD, json.dumps({"keys": [entry]}))


# --- RFC 7515 section 2 spelling applies to JWK members too --------------------------


@PARSERS
@pytest.mark.parametrize(
    ("respell", "reason"),
    [
        (lambda v: v + "=" * (-len(v) % 4 or 4), "padding is not allowed"),
        (lambda v: v.replace("-", "+").replace("_", "/"), "standard base64"),
    ],
)
def test_jwk_members_must_be_unpadded_base64url(parse: Parse, respell, reason):
    while True:  # a key whose x has a '-' or '_' and is not a multiple of 3 octets
        jwk = _jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
        if "-" in jwk["x"] or "_" in jwk["x"]:
            break
    with pytest.raises(BundleError, match=reason):
        parse([{**jwk, "x": respell(jwk["x"])}])


# --- strict JSON (RFC 8259) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b'\xef\xbb\xbf{"keys": []}', "byte order mark"),
        ('{"keys": []}'.encode("utf-16"), "NUL byte"),
        ('{"keys": []}'.encode("utf-32-be"), "NUL byte"),
        (b'{"keys": [], "keys": [{"kty": "EC"}]}', "duplicate member name 'keys'"),
        (b'{"keys": [], "spiffe_sequence": NaN}', r"NaN is not a JSON number"),
        (b'{"keys": [], "spiffe_refresh_hint": 1e999}', "out of range"),
        (b'{"keys": [' + b"[" * 5000 + b"]" * 5000 + b"]}", "nests deeper than"),
        (b'{"keys": [], "x": "\\udc00"}', "lone UTF-16 surrogate"),
    ],
)
@pytest.mark.parametrize(
    "parse", [JwtBundle.parse_jwks, SpiffeBundle.parse], ids=["jwtbundle", "spiffebundle"]
)
def test_rfc8259_bundle_json_is_strict(parse, document, reason):
    with pytest.raises(BundleError, match=f"unable to parse JWKS: .*{reason}"):
        parse(TD, document)


@pytest.mark.parametrize("hint", [2**63, 2**64 - 1, 10**20])
def test_refresh_hint_beyond_timedelta_is_an_error_not_overflow(hint):
    with pytest.raises(BundleError, match="spiffe_refresh_hint must be a non-negative integer"):
        SpiffeBundle.parse(TD, json.dumps({"keys": [], "spiffe_refresh_hint": hint}))


def test_largest_refresh_hint_still_parses():
    doc = json.dumps({"keys": [], "spiffe_refresh_hint": 999_999_999 * 86_400})
    assert SpiffeBundle.parse(TD, doc).refresh_hint is not None


# --- certificates are read eagerly, as go's ParseCertificate reads them ---------------


def _der_with_off_curve_key() -> bytes:
    """A CA certificate whose EC point was corrupted after signing: it still loads, lazily."""
    ca = make_ca("example.org", key=ec.generate_private_key(ec.SECP256R1()))
    der = bytearray(ca.cert.public_bytes(serialization.Encoding.DER))
    point = ca.cert.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    at = bytes(der).index(point) + len(point) - 1
    der[at] ^= 0x01
    return bytes(der)


def test_x5c_certificate_with_a_corrupt_public_key_is_refused():
    doc = {"keys": [{"use": "x509-svid", "kty": "EC", "x5c": []}]}
    doc["keys"][0]["x5c"] = [base64.b64encode(_der_with_off_curve_key()).decode()]
    with pytest.raises(BundleError, match=r"keys\[0\]\.x5c\[0\] .*malformed public key"):
        SpiffeBundle.parse(TD, json.dumps(doc))


def test_der_bundle_with_a_corrupt_public_key_is_refused():
    with pytest.raises(BundleError, match="certificate 0: malformed public key"):
        X509Bundle.parse_der(TD, _der_with_off_curve_key())
