"""Property tests: the JWT-SVID parser and validator on hostile tokens.

Whatever the text, both entry points return a JwtSvid or raise JwtSvidError (an
IdentityError): never ValueError, OverflowError, UnicodeDecodeError, KeyError,
IndexError or RecursionError. Claims of any JSON shape, raw payload text that is almost
JSON, and every small edit of a valid token are tried; an edited token never validates.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from datetime import datetime, timezone
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import assume, event, given
from hypothesis import strategies as st

from spire_fabric.identity import (
    IdentityError,
    JwtBundle,
    JwtSvid,
    JwtSvidError,
    TrustDomain,
    parse_and_validate_jwt_svid,
    parse_insecure_jwt_svid,
)

from ._budget import budget
from ._jws import b64url, sign_es256_parts

TD = TrustDomain("a.example.org")
SUBJECT = "spiffe://a.example.org/web"
HEADER = {"alg": "ES256", "kid": "k1", "typ": "JWT"}
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
NOW = int(time.time())  # at import: strategies are built once; the long profile runs long
VALID_FOR = 7 * 86400  # so tokens minted at import stay valid through a long run
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@cache
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@cache
def bundle() -> JwtBundle:
    return JwtBundle(TD, {"k1": key().public_key()})


def sign(payload: bytes, header: bytes | None = None) -> str:
    header = json.dumps(HEADER).encode() if header is None else header
    return sign_es256_parts(b64url(header), b64url(payload), key())


def valid_claims(**overrides: Any) -> dict[str, Any]:
    return {"sub": SUBJECT, "aud": ["db"], "exp": NOW + VALID_FOR, "iat": NOW, **overrides}


@cache
def valid_token() -> str:
    return sign(json.dumps(valid_claims()).encode())


def outcome(token: str) -> JwtSvid | None:
    """Run both entry points; None if refused. Any other exception fails the property."""
    results = []
    for parse in (
        lambda: parse_and_validate_jwt_svid(token, bundle(), ["db"]),
        lambda: parse_insecure_jwt_svid(token, ["db"]),
    ):
        try:
            results.append(parse())
        except JwtSvidError as e:
            assert isinstance(e, IdentityError)
            assert str(e).startswith("jwtsvid: ")
            event(f"refused: {_reason(str(e))}")
            results.append(None)
    return results[0]


_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|-?\d[\w.+-]*")


def _reason(message: str) -> str:
    """A short label of the refusal (values blanked), for the statistics' event table."""
    reason = message.removeprefix("jwtsvid: ").removeprefix("unable to parse JWT token: ")
    reason = _VALUES.sub("_", reason.split(":")[0].split("(")[0].split(" got ")[0])
    return reason[:60].strip()


def check_valid(svid: JwtSvid) -> None:
    """What every accepted token must satisfy, whatever was thrown at the parser."""
    event("valid")
    claims = svid.claims
    assert str(svid.spiffe_id) == claims["sub"]
    assert "db" in svid.audience
    assert svid.expiry.tzinfo is not None
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        assert value is None or (type(value) in (int, float) and math.isfinite(value))
    assert svid.expiry.timestamp() >= time.time() - 120
    for name in ("iss", "jti"):
        assert claims.get(name) is None or isinstance(claims[name], str)
    json.dumps(claims, allow_nan=False).encode("utf-8")  # re-serializable as strict JSON


# --- strategies -------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # includes NaN and +-Infinity, written as such by json.dumps
    st.text(max_size=10),
    st.text(alphabet=st.characters(codec=None), max_size=4),  # lone surrogates too
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
dates = st.one_of(
    st.integers(NOW - 7200, NOW + 7200),
    st.floats(NOW - 7200, NOW + 7200),
    st.sampled_from([253402300799, 253402300800, 10**20, -62135596800, -62135596801, 0]),
    st.floats(),
    json_values,
)
_claim_values = {
    "sub": st.one_of(st.just(SUBJECT), st.just("spiffe://a.example.org"), json_values),
    "aud": st.one_of(st.just("db"), st.lists(st.sampled_from(["db", "x"])), json_values),
    "exp": dates,
    "nbf": dates,
    "iat": dates,
    "iss": st.text(max_size=5) | json_values,
    "jti": st.text(max_size=5) | json_values,
    "custom": json_values,
}
_core = ("sub", "aud", "exp")
claims_strategy = st.one_of(
    # Any subset of the claims, any values: mostly refused.
    st.fixed_dictionaries({}, optional=_claim_values),
    # The required claims present and most often well-typed: the accepting paths too.
    st.fixed_dictionaries(
        {
            "sub": st.just(SUBJECT) | _claim_values["sub"],
            "aud": st.just(["db"]) | _claim_values["aud"],
            "exp": st.integers(NOW + 60, NOW + VALID_FOR) | dates,
        },
        optional={k: v for k, v in _claim_values.items() if k not in _core},
    ),
)


@given(
    st.one_of(
        st.text(),
        st.text(alphabet=B64URL + ".=+/ \x00é", max_size=60),
        st.lists(st.binary(max_size=40).map(b64url), min_size=1, max_size=4).map(".".join),
        st.lists(st.text(max_size=10), min_size=3, max_size=3).map(".".join),
    )
)
@budget(10)
def test_any_text_is_a_token_or_a_jwt_svid_error(token: str) -> None:
    svid = outcome(token)
    assert svid is None  # nothing unsigned-by-us can validate


@given(claims_strategy)
@budget(6)
def test_signed_claims_of_any_json_shape_validate_or_are_refused(claims: dict[str, Any]) -> None:
    svid = outcome(sign(json.dumps(claims).encode()))
    if svid is not None:
        check_valid(svid)
        assert svid.claims == claims


# Edits that turn JSON text into almost-JSON: constants, BOMs, duplicate members,
# truncation, escapes, deep nesting, non-UTF-8 bytes.
_FRAGMENTS = [
    "NaN", "Infinity", "-Infinity", "1e400", "\ufeff", '"sub": 1, ', '"exp": "soon", ',
    '"sub": "spiffe://a.example.org/admin", ', "\\ud800", "[" * 70, "}", "{", ",", '"', "\\",
    "\x00", "1" * 4400,
]  # fmt: skip


@st.composite
def almost_json(draw: st.DrawFn) -> bytes:
    text = json.dumps(draw(claims_strategy | st.just(valid_claims())))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "after-brace"]))
        if edit == "insert":
            text = text[:at] + draw(st.sampled_from(_FRAGMENTS) | st.text(max_size=3)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)) :]
        else:
            text = "{" + draw(st.sampled_from(_FRAGMENTS)) + text[1:]
    codec = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-32-le"]))
    data = text.encode(codec, "surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=3)) + data[at:]
    return data


@given(almost_json())
@budget(6)
def test_almost_json_payloads_validate_only_when_strictly_valid(payload: bytes) -> None:
    svid = outcome(sign(payload))
    if svid is not None:
        check_valid(svid)
        text = payload.decode("utf-8")  # accepted means: UTF-8 ...
        assert not text.startswith("\ufeff")  # ... without a BOM ...
        assert json.loads(text) == svid.claims  # ... and plain JSON


@given(almost_json())
@budget(3)
def test_almost_json_headers_validate_only_when_strictly_valid(header: bytes) -> None:
    svid = outcome(sign(json.dumps(valid_claims()).encode(), header=header))
    if svid is not None:
        check_valid(svid)
        parsed = json.loads(header.decode("utf-8"))
        assert parsed["alg"] == "ES256" and parsed["kid"] == "k1"


@st.composite
def edited_tokens(draw: st.DrawFn) -> str:
    """A valid token with one small textual edit in one of its parts."""
    parts = valid_token().split(".")
    index = draw(st.integers(0, 2))
    part = parts[index]
    at = draw(st.integers(0, len(part) - 1))
    char = draw(st.sampled_from(B64URL + "=+/.") | st.characters())
    edits = ["replace", "insert", "delete", "append", "truncate", "swap", "last"]
    edit = draw(st.sampled_from(edits))
    if edit == "last":
        # The last character's unused low bits: a re-spelling of the same octets.
        part = part[:-1] + draw(st.sampled_from(B64URL))
    elif edit == "replace":
        part = part[:at] + char + part[at + 1 :]
    elif edit == "insert":
        part = part[:at] + char + part[at:]
    elif edit == "delete":
        part = part[:at] + part[at + 1 :]
    elif edit == "append":
        part = part + char
    elif edit == "truncate":
        part = part[:at]
    else:
        part = part[:at] + part[at + 1 : at + 2] + part[at : at + 1] + part[at + 2 :]
    parts[index] = part
    event(f"edited {('header', 'payload', 'signature')[index]} ({edit})")
    return ".".join(parts)


@given(edited_tokens())
@budget(12)
def test_an_edited_token_never_validates(token: str) -> None:
    assume(token != valid_token())
    try:
        parse_and_validate_jwt_svid(token, bundle(), ["db"])
    except JwtSvidError as e:
        event(f"refused: {_reason(str(e))}")
    else:
        raise AssertionError(f"edited token validated: {token!r}")


@given(st.integers(0, 2), st.data())
@budget(6)
def test_flipped_bits_in_any_decoded_part_never_validate(index: int, data: st.DataObject) -> None:
    parts = valid_token().split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[index] + "=="))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    parts[index] = b64url(bytes(raw))
    try:
        parse_and_validate_jwt_svid(".".join(parts), bundle(), ["db"])
    except JwtSvidError as e:
        event(f"refused: {_reason(str(e))}")
    else:
        raise AssertionError(f"token with part {index} byte {at} flipped validated")


@given(
    st.sampled_from(["spiffe://a.example.org/web", "spiffe://a.example.org/a/b-c/D_9"]),
    st.lists(st.text(alphabet="abc", min_size=1, max_size=3), max_size=3),
    st.integers(60, 10**9),
)
@budget(1)
def test_well_formed_tokens_validate_and_report_their_claims(sub, audiences, lifetime) -> None:
    exp = int(time.time()) + lifetime
    claims = valid_claims(sub=sub, aud=["db", *audiences], exp=exp)
    svid = parse_and_validate_jwt_svid(sign(json.dumps(claims).encode()), bundle(), ["db"])
    check_valid(svid)
    assert svid.expiry == datetime.fromtimestamp(exp, tz=timezone.utc)
    assert svid.audience == ("db", *audiences)


def test_ecdsa_signature_malleability_is_a_second_spelling_documented_not_refused() -> None:
    """(r, n - s) verifies like (r, s) (ECDSA, FIPS 186-5): a third party can re-spell a
    token's signature. JWS does not require low-s and go's signer does not produce it, so
    it cannot be refused; docs/untrusted-input.md says to key deny-lists and replay
    caches on header.payload (or jti), not on the whole token text."""
    header, payload, signature = valid_token().split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    malleated = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    # Sanity: the DER forms verify alike with the raw key too.
    key().public_key().verify(
        encode_dss_signature(r, P256_ORDER - s),
        f"{header}.{payload}".encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    respelled = f"{header}.{payload}.{b64url(malleated)}"
    assert respelled != valid_token()
    assert parse_and_validate_jwt_svid(respelled, bundle(), ["db"]).spiffe_id.path == "/web"
