from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from spire_fabric.identity import (
    BundleError,
    BundleSet,
    JwtBundle,
    JwtBundleSource,
    SpiffeBundle,
    TrustDomain,
    X509Bundle,
    X509BundleSource,
)

from ._pki import make_ca

TD = TrustDomain("example.org")
OTHER = TrustDomain("other.org")


@pytest.fixture(scope="module")
def roots():
    return [
        make_ca("example.org"),
        make_ca("example.org", key=rsa.generate_private_key(65537, 2048)),
    ]


@pytest.fixture(scope="module")
def jwt_keys():
    return {
        "ec-key": ec.generate_private_key(ec.SECP384R1()).public_key(),
        "rsa-key": rsa.generate_private_key(65537, 2048).public_key(),
        "ed-key": ed25519.Ed25519PrivateKey.generate().public_key(),
    }


# --- X509Bundle ---------------------------------------------------------------------


def test_x509_bundle_pem_and_der_round_trip(roots):
    bundle = X509Bundle(TD, tuple(r.cert for r in roots))
    assert X509Bundle.parse_pem(TD, bundle.to_pem()) == bundle
    assert X509Bundle.parse_der(TD, bundle.to_der()) == bundle
    assert X509Bundle.parse_der(TD, bundle.to_der()).x509_authorities[1] == roots[1].cert


def test_x509_bundle_drops_duplicate_authorities(roots):
    assert X509Bundle(TD, (roots[0].cert, roots[0].cert)).x509_authorities == (roots[0].cert,)


def test_x509_bundle_with_truncated_der_is_rejected(roots):
    der = X509Bundle(TD, (roots[0].cert, roots[1].cert)).to_der()
    with pytest.raises(BundleError, match="x509bundle: cannot parse certificate: certificate 1"):
        X509Bundle.parse_der(TD, der[:-5])


def test_x509_bundle_converts_to_and_from_py_spiffe(roots):
    bundle = X509Bundle(TD, (roots[0].cert,))
    assert X509Bundle.from_spiffe(bundle.to_spiffe()) == bundle


# --- JwtBundle ----------------------------------------------------------------------


def test_jwt_bundle_jwks_round_trip_keeps_every_key(jwt_keys):
    bundle = JwtBundle(TD, jwt_keys)
    parsed = JwtBundle.parse_jwks(TD, bundle.to_jwks())
    assert parsed == bundle
    assert parsed.find_jwt_authority("ec-key") == jwt_keys["ec-key"]
    assert parsed.find_jwt_authority("missing") is None


def test_jwt_bundle_jwks_is_readable_by_pyjwt(jwt_keys):
    import jwt  # pyjwt: an independent implementation, installed with py-spiffe

    doc = json.loads(JwtBundle(TD, jwt_keys).to_jwks())
    for jwk in doc["keys"]:
        oracle = jwt.PyJWK(jwk).key
        assert oracle.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == jwt_keys[jwk["kid"]].public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def test_jwt_bundle_key_without_kid_is_rejected_naming_its_index(jwt_keys):
    doc = json.loads(JwtBundle(TD, jwt_keys).to_jwks())
    del doc["keys"][1]["kid"]
    with pytest.raises(BundleError, match=r"keys\[1\]\.kid is required"):
        JwtBundle.parse_jwks(TD, json.dumps(doc))


def test_jwt_bundle_cannot_hold_an_empty_key_id(jwt_keys):
    with pytest.raises(BundleError, match="key ID cannot be empty"):
        JwtBundle(TD, {"": jwt_keys["ec-key"]})


# --- SpiffeBundle -------------------------------------------------------------------


def test_spiffe_bundle_round_trip_keeps_authorities_refresh_hint_and_sequence(roots, jwt_keys):
    bundle = SpiffeBundle(
        TD,
        tuple(r.cert for r in roots),
        jwt_keys,
        refresh_hint=timedelta(minutes=5),
        sequence_number=42,
    )
    doc = json.loads(bundle.marshal())
    assert doc["spiffe_refresh_hint"] == 300
    assert doc["spiffe_sequence"] == 42
    assert [k["use"] for k in doc["keys"]] == ["x509-svid"] * 2 + ["jwt-svid"] * 3

    parsed = SpiffeBundle.parse(TD, bundle.marshal())

    assert parsed == bundle
    assert parsed.refresh_hint == timedelta(seconds=300)
    assert parsed.sequence_number == 42
    assert parsed.x509_bundle() == X509Bundle(TD, tuple(r.cert for r in roots))
    assert parsed.jwt_bundle() == JwtBundle(TD, jwt_keys)


def test_spiffe_bundle_without_hint_or_sequence_omits_them():
    doc = json.loads(SpiffeBundle(TD).marshal())
    assert doc == {"keys": []}
    parsed = SpiffeBundle.parse(TD, b'{"keys": []}')
    assert parsed.refresh_hint is None
    assert parsed.sequence_number is None


def test_refresh_hint_rounds_up_to_whole_seconds():
    doc = json.loads(SpiffeBundle(TD, refresh_hint=timedelta(milliseconds=1500)).marshal())
    assert doc["spiffe_refresh_hint"] == 2


def test_spiffe_bundle_ignores_keys_of_unknown_use_or_type(roots):
    der = roots[0].cert.public_bytes(serialization.Encoding.DER)
    doc = {
        "keys": [
            {"use": "wit-svid", "kty": "EC", "kid": "x"},
            {"use": "jwt-svid", "kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"use": "x509-svid", "kty": "EC", "x5c": [base64.b64encode(der).decode()]},
        ]
    }
    parsed = SpiffeBundle.parse(TD, json.dumps(doc))
    assert parsed.x509_authorities == (roots[0].cert,)
    assert dict(parsed.jwt_authorities) == {}


def _x509_key(cert) -> dict:
    der = cert.public_bytes(serialization.Encoding.DER)
    return {"use": "x509-svid", "kty": "EC", "x5c": [base64.b64encode(der).decode()]}


@pytest.mark.parametrize(
    ("make_doc", "named"),
    [
        (lambda c: "{not json", "unable to parse JWKS"),
        (lambda c: "[]", "JWKS must be a JSON object"),
        (lambda c: "{}", "missing the required 'keys' member"),
        (lambda c: '{"keys": {}}', "'keys' must be an array"),
        (lambda c: '{"keys": ["x"]}', r"keys\[0\] must be a JSON object"),
        (lambda c: json.dumps({"keys": [{"use": "x509-svid"}]}), r"keys\[0\]\.kty is required"),
        (
            lambda c: json.dumps({"keys": [_x509_key(c), {**_x509_key(c), "x5c": []}]}),
            r"keys\[1\] \(use 'x509-svid'\): expected a single certificate in x5c, got 0",
        ),
        (
            lambda c: json.dumps({"keys": [{**_x509_key(c), "x5c": _x509_key(c)["x5c"] * 2}]}),
            "expected a single certificate in x5c, got 2",
        ),
        (
            lambda c: json.dumps({"keys": [{**_x509_key(c), "x5c": ["!!notbase64"]}]}),
            r"keys\[0\]\.x5c\[0\] is not a DER certificate",
        ),
        (
            lambda c: json.dumps({"keys": [{"use": "jwt-svid", "kty": "EC", "crv": "P-256"}]}),
            r"keys\[0\]\.kid is required for use 'jwt-svid'",
        ),
        (
            lambda c: json.dumps(
                {"keys": [{"use": "jwt-svid", "kty": "EC", "kid": "k", "crv": "P-256", "x": "AA"}]}
            ),
            r"keys\[0\] \(kid 'k'\): invalid EC P-256 key: 'y' is required",
        ),
        (
            lambda c: json.dumps({"keys": [], "spiffe_refresh_hint": "300"}),
            "spiffe_refresh_hint must be a non-negative integer",
        ),
        (
            lambda c: json.dumps({"keys": [], "spiffe_refresh_hint": -1}),
            "spiffe_refresh_hint must be a non-negative integer",
        ),
        (
            lambda c: json.dumps({"keys": [], "spiffe_sequence": 1.5}),
            "spiffe_sequence must be a non-negative integer",
        ),
    ],
)
def test_malformed_spiffe_bundle_is_rejected_naming_the_field(roots, make_doc, named):
    with pytest.raises(BundleError, match=f"spiffebundle: .*{named}"):
        SpiffeBundle.parse(TD, make_doc(roots[0].cert))


def test_x509_key_whose_parameters_contradict_its_certificate_is_rejected(roots):
    bundle = json.loads(SpiffeBundle(TD, (roots[0].cert,)).marshal())
    other = json.loads(SpiffeBundle(TD, (make_ca("example.org").cert,)).marshal())
    bundle["keys"][0]["x"] = other["keys"][0]["x"]
    bundle["keys"][0]["y"] = other["keys"][0]["y"]
    with pytest.raises(BundleError, match=r"keys\[0\]: key parameters do not match"):
        SpiffeBundle.parse(TD, json.dumps(bundle))


# --- BundleSet and sources ----------------------------------------------------------


def test_bundle_set_keys_by_trust_domain_and_replaces_on_add(roots):
    first = X509Bundle(TD, (roots[0].cert,))
    second = X509Bundle(TD, (roots[1].cert,))
    other = X509Bundle(OTHER, (roots[0].cert,))
    bundles = BundleSet([first, other])
    bundles.add(second)

    assert bundles.get(TD) is second
    assert len(bundles) == 2
    assert list(bundles) == [second, other]
    bundles.remove(OTHER)
    assert OTHER not in bundles
    assert bundles.get(OTHER) is None
    bundles.remove(OTHER)  # removing twice is harmless


def test_bundle_sets_answer_only_for_the_bundle_kind_they_hold(roots, jwt_keys):
    x509_set = BundleSet([X509Bundle(TD, (roots[0].cert,))])
    jwt_set = BundleSet([JwtBundle(TD, jwt_keys)])
    spiffe_set = BundleSet([SpiffeBundle(TD, (roots[0].cert,), jwt_keys)])

    assert x509_set.get_x509_bundle_for_trust_domain(TD) is not None
    assert x509_set.get_jwt_bundle_for_trust_domain(TD) is None
    assert jwt_set.get_jwt_bundle_for_trust_domain(TD) == JwtBundle(TD, jwt_keys)
    assert jwt_set.get_x509_bundle_for_trust_domain(TD) is None
    assert spiffe_set.get_x509_bundle_for_trust_domain(TD) == X509Bundle(TD, (roots[0].cert,))
    assert spiffe_set.get_jwt_bundle_for_trust_domain(TD) == JwtBundle(TD, jwt_keys)
    assert spiffe_set.get_jwt_bundle_for_trust_domain(OTHER) is None


def test_bundles_and_sets_satisfy_the_source_protocols(roots, jwt_keys):
    for both in (BundleSet(), SpiffeBundle(TD)):
        assert isinstance(both, X509BundleSource)
        assert isinstance(both, JwtBundleSource)
    assert isinstance(X509Bundle(TD), X509BundleSource)
    assert isinstance(JwtBundle(TD), JwtBundleSource)
    assert not isinstance(X509Bundle(TD), JwtBundleSource)
    assert X509Bundle(TD).get_x509_bundle_for_trust_domain(OTHER) is None
