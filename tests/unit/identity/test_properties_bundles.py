"""Property tests: JWKS and SPIFFE bundle parsing on hostile documents.

A federation endpoint can send anything. Whatever the bytes, JSON shape or edit of a
valid bundle, parsing returns a bundle or raises BundleError (an IdentityError); an
accepted bundle round-trips through its own serialization and never came from a key
that carried private members.
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import event, given
from hypothesis import strategies as st

from spire_fabric.identity import (
    BundleError,
    IdentityError,
    JwtBundle,
    SpiffeBundle,
    TrustDomain,
)
from spire_fabric.identity._jwk import b64url_encode

from ._budget import budget
from ._pki import make_ca

# Edited DER can carry a non-positive serial number, which cryptography still loads with
# a deprecation warning; that is its business, not a finding of these properties.
pytestmark = pytest.mark.filterwarnings(
    "ignore::cryptography.utils.CryptographyDeprecationWarning"
)

TD = TrustDomain("example.org")


@cache
def valid_bundle() -> SpiffeBundle:
    return SpiffeBundle(
        TD,
        (
            make_ca(TD.name).cert,
            make_ca(TD.name, key=ec.generate_private_key(ec.SECP384R1())).cert,
        ),
        {
            "ec": ec.generate_private_key(ec.SECP256R1()).public_key(),
            "ec521": ec.generate_private_key(ec.SECP521R1()).public_key(),
            "rsa": rsa.generate_private_key(65537, 2048).public_key(),
            "ed": ed25519.Ed25519PrivateKey.generate().public_key(),
        },
        refresh_hint=timedelta(seconds=300),
        sequence_number=7,
    )


@cache
def valid_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(valid_bundle().marshal())
    return doc


def parse_both(data: bytes | str) -> tuple[SpiffeBundle | None, JwtBundle | None]:
    """Parse with both parsers; None where refused. Other exceptions fail the property."""
    results: list[Any] = []
    for parse in (SpiffeBundle.parse, JwtBundle.parse_jwks):
        try:
            results.append(parse(TD, data))
        except BundleError as e:
            assert isinstance(e, IdentityError)
            event(f"{parse.__qualname__.split('.')[0]} refused: {_reason(str(e))}")
            results.append(None)
    return results[0], results[1]


def _reason(message: str) -> str:
    reason = message.split(": ", 1)[-1]
    for cut in (" (", ": ", " got", " keys["):
        reason = reason.split(cut)[0]
    return reason[:50]


def check_accepted(spiffe: SpiffeBundle | None, jwt: JwtBundle | None, doc: Any) -> None:
    if spiffe is not None:
        event("SpiffeBundle accepted")
        assert SpiffeBundle.parse(TD, spiffe.marshal()) == spiffe
    if jwt is not None:
        event("JwtBundle accepted")
        assert JwtBundle.parse_jwks(TD, jwt.to_jwks()) == jwt
    if (spiffe is not None or jwt is not None) and isinstance(doc, dict):
        for key in doc.get("keys", []):
            if isinstance(key, dict) and key.get("kty") in ("EC", "OKP", "RSA"):
                assert "d" not in key, "a bundle with a private key was accepted"


# --- strategies -------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.text(alphabet=st.characters(codec=None), max_size=3),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)
b64_values = st.one_of(
    st.binary(max_size=70).map(b64url_encode),
    st.sampled_from([31, 32, 33, 47, 48, 65, 66, 67]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n).map(b64url_encode)
    ),
    st.text(alphabet="ABCabc019-_=+/", max_size=50),
)
member_values = {
    "kty": st.sampled_from(["EC", "RSA", "OKP", "oct", "", "ec"]) | json_values,
    "crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "X25519"]) | json_values,
    "use": st.sampled_from(["jwt-svid", "x509-svid", "sig"]) | json_values,
    "kid": st.text(max_size=4) | json_values,
    "x": b64_values | json_values,
    "y": b64_values | json_values,
    "n": b64_values | json_values,
    "e": st.sampled_from(["AQAB", "Aw", "AA", ""]) | b64_values | json_values,
    "d": b64_values,
    "x5c": st.lists(st.binary(max_size=50).map(lambda b: base64.b64encode(b).decode()), max_size=2)
    | json_values,
}
jwks = st.lists(st.fixed_dictionaries({}, optional=member_values), max_size=4)
documents = st.fixed_dictionaries(
    {"keys": jwks | json_values},
    optional={
        "spiffe_refresh_hint": st.integers() | st.integers(0, 2**64) | json_values,
        "spiffe_sequence": st.integers() | st.integers(0, 2**65) | json_values,
    },
)


@given(st.one_of(st.binary(), st.text(), st.binary().map(lambda b: b'{"keys": [' + b)))
@budget(10)
def test_any_bytes_are_a_bundle_or_a_bundle_error(data: bytes | str) -> None:
    check_accepted(*parse_both(data), None)


@given(documents)
@budget(6)
def test_jwks_of_any_json_shape_parse_or_are_refused(doc: dict[str, Any]) -> None:
    check_accepted(*parse_both(json.dumps(doc)), doc)


@st.composite
def edited_docs(draw: st.DrawFn) -> dict[str, Any]:
    """The valid bundle document with a few member-level edits."""
    doc = copy.deepcopy(valid_doc())
    for _ in range(draw(st.integers(1, 3))):
        listed = doc.get("keys")
        keys = [k for k in listed if isinstance(k, dict)] if isinstance(listed, list) else []
        target = draw(st.sampled_from(["key", "key", "key", "top"]))
        if target == "top" or not keys:
            name = draw(st.sampled_from(["spiffe_refresh_hint", "spiffe_sequence", "keys"]))
            doc[name] = draw(json_values | st.integers())
            event(f"edited top-level {name}")
            continue
        key = keys[draw(st.integers(0, len(keys) - 1))]
        name = draw(st.sampled_from(sorted(member_values)))
        action = draw(st.sampled_from(["set", "delete", "respell"]))
        if action == "delete":
            key.pop(name, None)
        elif action == "respell" and isinstance(key.get(name), str):
            value = key[name]
            at = draw(st.integers(0, len(value)))
            key[name] = value[:at] + draw(st.sampled_from(["=", "+", "/", "A", "AA"])) + value[at:]
        else:
            key[name] = draw(member_values[name])
        event(f"{action} member {name}")
    return doc


@given(edited_docs())
@budget(4)
def test_edited_bundles_parse_or_are_refused(doc: dict[str, Any]) -> None:
    check_accepted(*parse_both(json.dumps(doc)), doc)


@given(st.data())
@budget(4)
def test_byte_edits_of_a_valid_bundle_parse_or_are_refused(data: st.DataObject) -> None:
    raw = bytearray(valid_bundle().marshal())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        edit = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if edit == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif edit == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            del raw[at : at + data.draw(st.integers(1, 8))]
    check_accepted(*parse_both(bytes(raw)), None)


@given(st.integers(), st.integers())
@budget(2)
def test_refresh_hint_and_sequence_of_any_size(hint: int, sequence: int) -> None:
    doc = {"keys": [], "spiffe_refresh_hint": hint, "spiffe_sequence": sequence}
    try:
        bundle = SpiffeBundle.parse(TD, json.dumps(doc))
    except BundleError:
        assert not (0 <= hint <= 999_999_999 * 86_400 and 0 <= sequence < 2**64)
    else:
        assert bundle.sequence_number == sequence
        assert bundle.refresh_hint == timedelta(seconds=hint)


def test_valid_bundle_round_trips() -> None:
    marshalled = valid_bundle().marshal()
    assert SpiffeBundle.parse(TD, marshalled) == valid_bundle()
    der = valid_bundle().x509_authorities[0].public_bytes(serialization.Encoding.DER)
    assert base64.b64encode(der).decode() == valid_doc()["keys"][0]["x5c"][0]
