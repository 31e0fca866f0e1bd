"""JWT-SVIDs are parsed as strictly as RFC 7515/7519/8259 say, and never crash.

Every hostile token here is correctly signed by a trusted key, so a refusal can only come
from the rule the test names, not from the signature check.
"""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from spire_fabric.identity import (
    IdentityError,
    JwtBundle,
    JwtSvidError,
    TrustDomain,
    parse_and_validate_jwt_svid,
    parse_insecure_jwt_svid,
)

from ._jws import b64url, sign_es256_parts

TD = TrustDomain("a.example.org")
SUBJECT = "spiffe://a.example.org/web"
HEADER = {"alg": "ES256", "kid": "k1", "typ": "JWT"}


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def bundle(key) -> JwtBundle:
    return JwtBundle(TD, {"k1": key.public_key()})


def _claims_text(**extra: str) -> str:
    """Claims as JSON text; ``extra`` values are raw JSON, so they can be non-standard."""
    members = {"sub": json.dumps(SUBJECT), "aud": '"db"', "exp": str(int(time.time()) + 600)}
    members.update(extra)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in members.items()) + "}"


def _token(key, payload: bytes | str, header: bytes | str | None = None) -> str:
    header = json.dumps(HEADER) if header is None else header
    h = header.encode() if isinstance(header, str) else header
    p = payload.encode() if isinstance(payload, str) else payload
    return sign_es256_parts(b64url(h), b64url(p), key)


def _refused(token: str, bundle: JwtBundle, match: str) -> None:
    """Both entry points refuse with a JwtSvidError whose message matches."""
    with pytest.raises(JwtSvidError, match=match):
        parse_and_validate_jwt_svid(token, bundle, ["db"])
    with pytest.raises(JwtSvidError, match=match):
        parse_insecure_jwt_svid(token, ["db"])


def test_the_well_formed_baseline_is_accepted(key, bundle):
    token = _token(key, _claims_text(nbf=str(int(time.time()) - 10), iss='"issuer"'))
    assert str(parse_and_validate_jwt_svid(token, bundle, ["db"]).spiffe_id) == SUBJECT


# --- 1. numeric dates that do not fit: an error, never ValueError/OverflowError ---------

NOT_A_DATE = [
    ("253402300800", "out of range"),  # 10000-01-01T00:00:00Z
    ("1e20", "out of range"),
    ("-1e20", "out of range"),
    (str(10**400), "out of range"),
    ("1e400", "must be a finite NumericDate"),
    ("-1e400", "must be a finite NumericDate"),
    ("NaN", "must be a finite NumericDate"),
    ("Infinity", "must be a finite NumericDate"),
    ("-Infinity", "must be a finite NumericDate"),
]


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(("value", "reason"), NOT_A_DATE)
def test_rfc7519_s2_numeric_date_out_of_range_is_refused_naming_the_claim(
    key, bundle, claim, value, reason
):
    token = _token(key, _claims_text(**{claim: value}))
    _refused(token, bundle, f"token {claim} claim.*{reason}")


def test_year_9999_is_still_a_numeric_date(key, bundle):
    token = _token(key, _claims_text(exp="253402300799"))
    svid = parse_and_validate_jwt_svid(token, bundle, ["db"])
    assert svid.expiry.year == 9999


def test_a_fractional_numeric_date_is_accepted(key, bundle):
    exp = round(time.time() + 600, 3) + 0.0005
    token = _token(key, _claims_text(exp=repr(exp)))
    assert parse_and_validate_jwt_svid(token, bundle, ["db"]).expiry.timestamp() == pytest.approx(
        exp, abs=1e-6
    )


# --- 2. registered claims of the wrong type (RFC 7519 section 4.1) -------------------


@pytest.mark.parametrize(
    ("claim", "value", "section"),
    [
        ("nbf", '"soon"', "4.1.5"),
        ("nbf", "true", "4.1.5"),
        ("iat", '"2024-01-01"', "4.1.6"),
        ("iat", "true", "4.1.6"),
        ("iat", "[1]", "4.1.6"),
        ("exp", '"tomorrow"', "4.1.4"),
        ("exp", "false", "4.1.4"),
        ("iss", "5", "4.1.1"),
        ("iss", '["a"]', "4.1.1"),
        ("jti", "{}", "4.1.7"),
        ("jti", "7", "4.1.7"),
        ("sub", "12", "4.1.2"),
        ("aud", "5", "4.1.3"),
        ("aud", '["db", 5]', "4.1.3"),
    ],
)
def test_rfc7519_s4_1_registered_claim_of_wrong_type_is_refused(
    key, bundle, claim, value, section
):
    token = _token(key, _claims_text(**{claim: value}))
    _refused(token, bundle, rf"token {claim} claim must be .*RFC 7519 section {section}")


def test_non_numeric_nbf_no_longer_skips_the_not_before_check(key, bundle):
    # It used to be ignored, so a token "not valid until soon" was valid now.
    token = _token(key, _claims_text(nbf='"9999999999"'))
    _refused(token, bundle, "token nbf claim must be a NumericDate")


def test_header_kid_must_be_a_string_rfc7515_s4_1_4(key, bundle):
    token = _token(key, _claims_text(), header='{"alg": "ES256", "kid": 1}')
    _refused(token, bundle, r"kid must be a string \(RFC 7515 section 4.1.4\)")


# --- 3. one token, one spelling: unpadded canonical base64url (RFC 7515 section 2) ---


def _respell(token: str, part: int, change) -> str:
    parts = token.split(".")
    parts[part] = change(parts[part])
    return ".".join(parts)


@pytest.mark.parametrize(("part", "name"), [(0, "header"), (1, "payload"), (2, "signature")])
def test_rfc7515_s2_padding_is_refused_in_every_part(key, bundle, part, name):
    token = _token(key, _claims_text())
    padded = _respell(token, part, lambda p: p + "=" * (-len(p) % 4 or 2))
    _refused(padded, bundle, f"{name}.*'=' padding is not allowed")


@pytest.mark.parametrize(("part", "name"), [(0, "header"), (1, "payload"), (2, "signature")])
def test_rfc7515_s2_standard_alphabet_is_refused_in_every_part(key, bundle, part, name):
    # Search for a token whose part has '-' or '_' to translate into '+' or '/'.
    for i in range(200):
        # '~' and '?' runs encode to '-' and '_' at some alignment.
        header = json.dumps({**HEADER, "x": "~?" * i})
        token = _token(key, _claims_text(jti=json.dumps("~?" * i)), header=header)
        text = token.split(".")[part]
        if "-" in text or "_" in text:
            break
    else:  # pragma: no cover - 200 signatures without either character
        pytest.skip("no '-' or '_' in 200 tries")
    standard = _respell(token, part, lambda p: p.replace("-", "+").replace("_", "/"))
    _refused(standard, bundle, f"{name}.*standard base64, not base64url")


def test_rfc4648_s3_5_non_canonical_trailing_bits_are_refused(key, bundle):
    # 64 signature bytes are 86 characters with 2 unused bits: flipping them re-spells
    # the same signature. Before, this second spelling validated like the first.
    token = _token(key, _claims_text())
    last = token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = token[:-1] + alphabet[alphabet.index(last) + 1]
    _refused(respelled, bundle, "signature.*non-canonical base64url")


def test_rfc4648_length_that_no_octets_encode_is_refused(key, bundle):
    token = _token(key, _claims_text())
    assert len(token.split(".")[2]) == 86  # 64 octets
    _refused(token + "AAA", bundle, "signature: invalid base64url: invalid base64url length")


# --- 4. strict JSON (RFC 8259 section 8.1, 6, 4; duplicate names as go-jose) ----------


@pytest.mark.parametrize("part", ["header", "payload"])
@pytest.mark.parametrize(
    ("encode", "reason"),
    [
        (lambda t: b"\xef\xbb\xbf" + t.encode(), "byte order mark"),
        (lambda t: t.encode("utf-16"), "NUL byte"),
        (lambda t: t.encode("utf-16-le"), "NUL byte"),
        (lambda t: t.encode("utf-16-be"), "NUL byte"),
        (lambda t: t.encode("utf-32"), "NUL byte"),
        (lambda t: t.encode("utf-32-le"), "NUL byte"),
        (lambda t: t.encode()[:-1] + b'\xc3"}', "not UTF-8"),
        (lambda t: t.encode().replace(b"{", b"{\xed\xa0\x80 ", 1), "not UTF-8"),
    ],
)
def test_rfc8259_s8_1_json_must_be_utf8_without_bom(key, bundle, part, encode, reason):
    header, payload = json.dumps(HEADER), _claims_text()
    if part == "header":
        token = _token(key, payload, header=encode(header))
    else:
        token = _token(key, encode(payload))
    _refused(token, bundle, f"{part} is not base64url JSON: .*{reason}")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_rfc8259_s6_nan_and_infinity_are_refused_in_any_claim(key, bundle, constant):
    token = _token(key, _claims_text(custom=f'{{"nested": [{constant}]}}'))
    _refused(token, bundle, "payload is not base64url JSON: .*RFC (8259 section 6|7493)")


@pytest.mark.parametrize(
    ("header", "payload", "name"),
    [
        (None, _claims_text()[:-1] + ', "sub": "spiffe://a.example.org/admin"}', "sub"),
        (None, _claims_text()[:-1] + ', "aud": "other"}', "aud"),
        (None, _claims_text()[:-1] + ', "exp": 1}', "exp"),
        (None, _claims_text(custom='{"a": 1, "a": 2}'), "a"),
        ('{"alg": "ES256", "kid": "k1", "alg": "RS256"}', _claims_text(), "alg"),
        ('{"alg": "ES256", "kid": "other", "kid": "k1"}', _claims_text(), "kid"),
    ],
)
def test_duplicate_member_names_are_refused_as_go_jose_does(key, bundle, header, payload, name):
    token = _token(key, payload, header=header)
    _refused(token, bundle, f"duplicate member name '{name}'")


def test_rfc8259_s8_2_lone_surrogate_escape_is_refused(key, bundle):
    token = _token(key, _claims_text(custom='"\\ud800"'))
    _refused(token, bundle, "lone UTF-16 surrogate")
    paired = _token(key, _claims_text(custom='"\\ud83d\\ude00"'))
    assert parse_and_validate_jwt_svid(paired, bundle, ["db"]).claims["custom"] == "\U0001f600"


def test_deep_nesting_is_refused_not_a_recursion_error(key, bundle):
    deep = "[" * 100_000 + "]" * 100_000
    token = _token(key, _claims_text(custom=deep))
    _refused(token, bundle, "nests deeper than 64 levels")


def test_a_number_of_more_than_4300_digits_is_an_error_not_a_crash(key, bundle):
    token = _token(key, _claims_text(custom="1" * 5000))
    _refused(token, bundle, "payload is not base64url JSON")


# --- never crash: every refusal is under the identity error base ----------------------


@pytest.mark.parametrize(
    "token",
    [
        ".",
        "..",
        "...",
        "a.b.c",
        "\x00.\x00.\x00",
        "é.é.é",
        "e30.e30.",
        "e30.e30.e30",
        b64url(b'{"alg":"ES256"}') + "." + b64url(b'{"sub":"spiffe://a.example.org/x"}') + ".",
    ],
)
def test_garbage_is_a_jwt_svid_error(bundle, token):
    for parse in (
        lambda: parse_and_validate_jwt_svid(token, bundle, ["db"]),
        lambda: parse_insecure_jwt_svid(token, ["db"]),
    ):
        with pytest.raises(JwtSvidError) as caught:
            parse()
        assert isinstance(caught.value, IdentityError)


def test_a_non_str_token_is_a_type_error_naming_it(bundle):
    with pytest.raises(TypeError, match="token must be a str"):
        parse_and_validate_jwt_svid(b"a.b.c", bundle, ["db"])  # type: ignore[arg-type]
