from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from spire_fabric.identity import (
    BundleSet,
    JwtBundle,
    JwtSvidError,
    SpiffeBundle,
    SpiffeId,
    TrustDomain,
    parse_and_validate_jwt_svid,
    parse_insecure_jwt_svid,
)

from ._jws import b64url, sign_token

TD_A = TrustDomain("a.example.org")
TD_B = TrustDomain("b.example.org")
SUBJECT = "spiffe://a.example.org/web"


@pytest.fixture(scope="module")
def keys():
    return {
        "a-ec": ec.generate_private_key(ec.SECP256R1()),
        "a-rsa": rsa.generate_private_key(65537, 2048),
        "b-ec": ec.generate_private_key(ec.SECP256R1()),
    }


@pytest.fixture(scope="module")
def bundles(keys) -> BundleSet[JwtBundle]:
    return BundleSet(
        [
            JwtBundle(
                TD_A, {"a-ec": keys["a-ec"].public_key(), "a-rsa": keys["a-rsa"].public_key()}
            ),
            JwtBundle(TD_B, {"b-ec": keys["b-ec"].public_key()}),
        ]
    )


def claims(**overrides):
    base = {"sub": SUBJECT, "aud": ["db"], "exp": int(time.time()) + 600, "iat": int(time.time())}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("alg", "kid"), [("ES256", "a-ec"), ("RS256", "a-rsa"), ("PS256", "a-rsa")]
)
def test_valid_token_is_accepted(keys, bundles, alg, kid):
    token = sign_token({"alg": alg, "kid": kid, "typ": "JWT"}, claims(), keys[kid])

    svid = parse_and_validate_jwt_svid(token, bundles, ["db"])

    assert svid.spiffe_id == SpiffeId.parse(SUBJECT)
    assert svid.audience == ("db",)
    assert svid.token == token
    assert svid.claims["sub"] == SUBJECT
    assert svid.expiry.tzinfo is not None
    assert abs(svid.expiry.timestamp() - (time.time() + 600)) < 5


def test_token_signed_by_pyjwt_is_accepted(keys, bundles):
    import jwt  # pyjwt: an independent implementation, installed with py-spiffe

    token = jwt.encode(claims(), keys["a-ec"], algorithm="ES256", headers={"kid": "a-ec"})
    assert parse_and_validate_jwt_svid(token, bundles, ["db"]).spiffe_id.path == "/web"


def test_unknown_kid_is_rejected_naming_kid_and_trust_domain(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "rotated-away"}, claims(), keys["a-ec"])
    with pytest.raises(
        JwtSvidError,
        match=r"no JWT authority 'rotated-away' found for trust domain 'a\.example\.org'",
    ):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_missing_kid_is_rejected(keys, bundles):
    token = sign_token({"alg": "ES256"}, claims(), keys["a-ec"])
    with pytest.raises(JwtSvidError, match="token header missing key id"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_alg_none_is_rejected(bundles):
    token = sign_token({"alg": "none", "kid": "a-ec"}, claims())
    with pytest.raises(JwtSvidError, match=r"unsigned token \(alg 'none'\) is not accepted"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])
    with pytest.raises(JwtSvidError, match="alg 'none'"):
        parse_insecure_jwt_svid(token, ["db"])


def test_hs256_is_rejected_even_with_the_public_key_as_secret(keys, bundles):
    # The classic confusion attack: HMAC keyed with the (public) verification key.
    secret = b64url(keys["a-ec"].public_key().public_numbers().x.to_bytes(32, "big")).encode()
    token = sign_token({"alg": "HS256", "kid": "a-ec"}, claims(), secret)
    with pytest.raises(JwtSvidError, match="HMAC algorithm 'HS256' is not accepted"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_token_for_other_audience_is_rejected_naming_both(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(aud="cache"), keys["a-ec"])
    with pytest.raises(
        JwtSvidError, match=r"expected audience in \['db', 'queue'\] \(audience=\['cache'\]\)"
    ):
        parse_and_validate_jwt_svid(token, bundles, ["db", "queue"])


def test_any_one_expected_audience_is_enough(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(aud=["x", "queue"]), keys["a-ec"])
    assert parse_and_validate_jwt_svid(token, bundles, ["db", "queue"]).audience == ("x", "queue")
    assert parse_and_validate_jwt_svid(token, bundles, "queue").audience == ("x", "queue")


def test_empty_expected_audience_is_refused(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(), keys["a-ec"])
    with pytest.raises(JwtSvidError, match="at least one expected audience is required"):
        parse_and_validate_jwt_svid(token, bundles, [])


def test_expired_token_is_rejected(keys, bundles):
    token = sign_token(
        {"alg": "ES256", "kid": "a-ec"}, claims(exp=int(time.time()) - 300), keys["a-ec"]
    )
    with pytest.raises(JwtSvidError, match="token has expired"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_now_moves_the_expiry_check(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(), keys["a-ec"])
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    with pytest.raises(JwtSvidError, match="token has expired"):
        parse_and_validate_jwt_svid(token, bundles, ["db"], now=later)


def test_token_without_exp_is_rejected(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(exp=None), keys["a-ec"])
    with pytest.raises(JwtSvidError, match="token missing exp claim"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_token_whose_trust_domain_has_no_bundle_is_rejected(keys, bundles):
    token = sign_token(
        {"alg": "ES256", "kid": "a-ec"}, claims(sub="spiffe://c.example.org/web"), keys["a-ec"]
    )
    with pytest.raises(JwtSvidError, match=r"no bundle found for trust domain 'c\.example\.org'"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_token_signed_by_other_trust_domains_key_is_rejected(keys, bundles):
    # B's key is trusted, but only for b.example.org subjects.
    token = sign_token({"alg": "ES256", "kid": "b-ec"}, claims(), keys["b-ec"])
    with pytest.raises(
        JwtSvidError, match=r"no JWT authority 'b-ec' found for trust domain 'a\.example\.org'"
    ):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_token_signed_by_other_key_under_a_known_kid_fails_signature_check(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(), keys["b-ec"])
    with pytest.raises(JwtSvidError, match="signature verification failed"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_tampered_payload_fails_signature_check(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(), keys["a-ec"])
    header, _, signature = token.split(".")
    forged = sign_token({"alg": "none"}, claims(sub="spiffe://a.example.org/admin")).split(".")[1]
    with pytest.raises(JwtSvidError, match="signature verification failed"):
        parse_and_validate_jwt_svid(f"{header}.{forged}.{signature}", bundles, ["db"])


def test_alg_that_does_not_fit_the_key_is_rejected(keys, bundles):
    token = sign_token({"alg": "RS256", "kid": "a-ec"}, claims(), keys["a-rsa"])
    with pytest.raises(JwtSvidError, match="token alg RS256 does not fit JWT authority 'a-ec'"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "token is empty"),
        ("a.b", "expected 3 dot-separated parts"),
        ("!!!.e30.", "header is not base64url JSON"),
        (f"{b64url(b'[]')}.e30.", "header must be a JSON object"),
    ],
)
def test_malformed_token_is_rejected(bundles, token, reason):
    with pytest.raises(JwtSvidError, match=reason):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_invalid_subject_is_rejected_with_the_spiffe_id_rule(keys, bundles):
    token = sign_token(
        {"alg": "ES256", "kid": "a-ec"}, claims(sub="spiffe://A.example.org/web"), keys["a-ec"]
    )
    with pytest.raises(JwtSvidError, match=r"invalid subject claim: .*lowercase letters"):
        parse_and_validate_jwt_svid(token, bundles, ["db"])


def test_spiffe_bundle_set_is_a_jwt_bundle_source(keys):
    source = BundleSet([SpiffeBundle(TD_A, jwt_authorities={"a-ec": keys["a-ec"].public_key()})])
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(), keys["a-ec"])
    assert parse_and_validate_jwt_svid(token, source, ["db"]).spiffe_id.trust_domain == TD_A


def test_insecure_parse_skips_signature_but_checks_claims(keys):
    token = sign_token({"alg": "ES256", "kid": "whatever"}, claims(), keys["b-ec"])
    assert parse_insecure_jwt_svid(token, ["db"]).spiffe_id == SpiffeId.parse(SUBJECT)
    with pytest.raises(JwtSvidError, match="expected audience"):
        parse_insecure_jwt_svid(token, ["other"])


def test_repr_does_not_leak_the_bearer_token(keys, bundles):
    token = sign_token({"alg": "ES256", "kid": "a-ec"}, claims(), keys["a-ec"])
    svid = parse_and_validate_jwt_svid(token, bundles, ["db"])
    assert token not in repr(svid)
    assert token.split(".")[2] not in repr(svid)
