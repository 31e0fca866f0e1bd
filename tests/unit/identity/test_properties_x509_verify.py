"""Property tests: the X509-SVID verifier on hostile chains.

A peer's chain arrives as DER in a handshake. Whatever the bytes, the order of the
certificates or the bundle they are checked against, ``verify_x509_svid`` returns the
leaf's ID or raises X509SvidError (an IdentityError); a certificate edited after signing
never verifies, and an accepted chain always ends at a bundle CA.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import assume, event, given
from hypothesis import strategies as st

from spire_fabric.identity import (
    BundleError,
    IdentityError,
    TrustDomain,
    X509Bundle,
    X509SvidError,
    spiffe_id_from_certificate,
    verify_x509_svid,
)
from spire_fabric.identity._x509_svid import is_ca

from ._budget import budget
from ._pki import NOW, Issued, _key_usage, make_ca, make_leaf

# Edited DER can carry a non-positive serial number, which cryptography still loads with
# a deprecation warning; that is its business, not a finding of these properties.
pytestmark = pytest.mark.filterwarnings(
    "ignore::cryptography.utils.CryptographyDeprecationWarning"
)

TD = TrustDomain("a.example.org")
LEAF_ID = "spiffe://a.example.org/w"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _legacy_ca(issuer: Issued) -> Issued:
    """A would-be CA without basicConstraints (keyCertSign only): never a signer."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legacy")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued(cert, key)


@cache
def pki() -> dict[str, Issued]:
    root = make_ca(TD.name)
    intermediate = make_ca(TD.name, issuer=root, label="intermediate")
    other_root = make_ca("b.example.org")
    legacy = _legacy_ca(root)
    return {
        "root": root,
        "intermediate": intermediate,
        "leaf": make_leaf(intermediate, [LEAF_ID]),
        "direct leaf": make_leaf(root, ["spiffe://a.example.org/direct"]),
        "other root": other_root,
        "forged leaf": make_leaf(other_root, ["spiffe://a.example.org/forged"]),
        "legacy": legacy,
        "legacy leaf": make_leaf(legacy, ["spiffe://a.example.org/legacy"]),
        "expired leaf": make_leaf(
            root, [LEAF_ID], not_before=NOW - timedelta(days=3), not_after=NOW - timedelta(days=2)
        ),
    }


def outcome(chain: list[x509.Certificate | bytes], bundle: X509Bundle, **kw) -> object | None:
    try:
        result = verify_x509_svid(chain, bundle, **kw)
    except X509SvidError as e:
        assert isinstance(e, IdentityError)
        assert str(e).startswith("x509svid: ")
        event(f"refused: {_reason(str(e))}")
        return None
    event("verified")
    return result


def _reason(message: str) -> str:
    reason = message.removeprefix("x509svid: ").removeprefix("could not verify leaf certificate: ")
    for cut in (" (", ": ", " '", " at "):
        reason = reason.split(cut)[0]
    return reason[:50]


def check_verified(result: object, chain: list[x509.Certificate], bundle: X509Bundle) -> None:
    spiffe_id, verified = result  # type: ignore[misc]
    leaf = chain[0]
    assert spiffe_id == spiffe_id_from_certificate(leaf)
    assert verified[0] == leaf
    assert verified[-1] in bundle.x509_authorities
    assert all(is_ca(c) for c in verified[1:])


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.binary(max_size=8).map(lambda b: b"\x30\x82" + b),
            st.sampled_from(["leaf", "intermediate", "root"]).map(lambda n: _der(pki()[n].cert)),
        ),
        max_size=4,
    )
)
@budget(6)
def test_any_bytes_in_a_chain_verify_or_are_refused(chain: list[bytes]) -> None:
    result = outcome(chain, X509Bundle(TD, (pki()["root"].cert,)))
    if result is not None:
        check_verified(result, [x509.load_der_x509_certificate(d) for d in chain], _root_bundle())


@cache
def _root_bundle() -> X509Bundle:
    return X509Bundle(TD, (pki()["root"].cert,))


@st.composite
def edited_der(draw: st.DrawFn, name: str) -> bytes:
    der = bytearray(_der(pki()[name].cert))
    for _ in range(draw(st.integers(1, 3))):
        if not der:
            break
        at = draw(st.integers(0, len(der) - 1))
        edit = draw(st.sampled_from(["flip", "flip", "insert", "delete", "truncate"]))
        if edit == "flip":
            der[at] ^= draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 255]))
        elif edit == "insert":
            der[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif edit == "delete":
            del der[at : at + draw(st.integers(1, 4))]
        else:
            del der[at:]
    return bytes(der)


def _same_signed_content(der: bytes, original: x509.Certificate) -> bool:
    """True if ``der`` carries the very TBS and signature of ``original`` (an edit of
    unsigned, redundant encoding only); such a certificate may legitimately verify."""
    try:
        cert = x509.load_der_x509_certificate(der)
        return (
            cert.tbs_certificate_bytes == original.tbs_certificate_bytes
            and cert.signature == original.signature
        )
    except (ValueError, x509.InvalidVersion):
        return False


@given(st.sampled_from(["leaf", "intermediate"]), st.data())
@budget(10)
def test_a_certificate_edited_after_signing_never_verifies(name: str, data) -> None:
    der = data.draw(edited_der(name))
    original = pki()[name].cert
    assume(der != _der(original))
    if name == "leaf":
        chain = [der, _der(pki()["intermediate"].cert)]
    else:
        chain = [_der(pki()["leaf"].cert), der]
    result = outcome(chain, _root_bundle())
    if result is not None:
        assert _same_signed_content(der, original), "an edited certificate verified"
        event("verified: the edit was outside the signed content")


@given(st.data())
@budget(6)
def test_an_edited_bundle_root_parses_and_verifies_or_is_refused(data) -> None:
    der = data.draw(edited_der("root"))
    assume(der != _der(pki()["root"].cert))
    try:
        bundle = X509Bundle.parse_der(TD, der)
    except BundleError as e:
        event(f"bundle refused: {_reason(str(e).removeprefix('x509bundle: '))}")
        return
    chain = [_der(pki()["leaf"].cert), _der(pki()["intermediate"].cert)]
    result = outcome(chain, bundle)
    if result is not None:
        assert _same_signed_content(der, pki()["root"].cert) or (
            bundle.x509_authorities[0].public_key() == pki()["root"].cert.public_key()
        ), "a root with another key anchored the chain"


NAMES = ["leaf", "direct leaf", "intermediate", "root", "other root", "forged leaf",
         "legacy", "legacy leaf", "expired leaf"]  # fmt: skip


@given(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=5),
    st.lists(st.sampled_from(NAMES), max_size=3),
    st.none() | st.datetimes(datetime(1971, 1, 1), datetime(9998, 1, 1), timezones=st.none()),
)
@budget(8)
def test_any_arrangement_of_certificates_verifies_only_to_a_bundle_ca(
    chain_names: list[str], bundle_names: list[str], now: datetime | None
) -> None:
    chain = [pki()[n].cert for n in chain_names]
    bundle = X509Bundle(TD, tuple(pki()[n].cert for n in bundle_names))
    result = outcome(chain, bundle, now=now)
    if result is not None:
        check_verified(result, chain, bundle)
        assert "leaf" in chain_names[0]
        assert chain_names[0] != "legacy leaf", "a CA without basicConstraints signed"
        if now is None:
            assert chain_names[0] != "expired leaf"
        else:
            assert pki()[chain_names[0]].cert.not_valid_after_utc >= now.replace(
                tzinfo=timezone.utc
            )
