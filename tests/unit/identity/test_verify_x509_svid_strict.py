"""Only real CAs sign X509-SVIDs, and a chain of arbitrary bytes is an error, not a crash.

X509-SVID spec section 4.1: signing certificates MUST set basicConstraints cA=true.
OpenSSL (which builds our chains) still accepts a trust anchor without basicConstraints
if it has keyCertSign; go's verifier does not (RFC 5280 section 4.2.1.9).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spire_fabric.identity import (
    BundleError,
    IdentityError,
    TrustDomain,
    X509Bundle,
    X509Svid,
    X509SvidError,
    verify_x509_svid,
)

from ._pki import NOW, Issued, _key_usage, make_ca, make_leaf

TD = TrustDomain("a.example.org")
LEAF_ID = "spiffe://a.example.org/w"


def _signer(
    name: str,
    *,
    issuer: Issued | None = None,
    basic_constraints: x509.BasicConstraints | None,
    key_cert_sign: bool = True,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """A would-be CA whose basicConstraints (or its absence) the test chooses."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=key_cert_sign, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if basic_constraints is not None:
        builder = builder.add_extension(basic_constraints, critical=True)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def test_root_without_basic_constraints_but_with_key_cert_sign_is_not_a_ca():
    legacy_root = _signer("legacy root", basic_constraints=None)
    leaf = make_leaf(legacy_root, [LEAF_ID])
    with pytest.raises(
        X509SvidError,
        match=r"no authority in the X.509 bundle of 'a.example.org' may sign certificates: "
        r"bundle authority 'CN=legacy root' \(no basicConstraints extension",
    ):
        verify_x509_svid([leaf.cert], X509Bundle(TD, (legacy_root.cert,)))


def test_root_with_ca_false_is_not_a_ca():
    root = _signer("not a ca", basic_constraints=x509.BasicConstraints(ca=False, path_length=None))
    leaf = make_leaf(root, [LEAF_ID])
    with pytest.raises(X509SvidError, match="basicConstraints cA is false"):
        verify_x509_svid([leaf.cert], X509Bundle(TD, (root.cert,)))


def test_intermediate_without_basic_constraints_is_not_a_ca():
    root = make_ca(TD.name)
    legacy = _signer("legacy intermediate", issuer=root, basic_constraints=None)
    leaf = make_leaf(legacy, [LEAF_ID])
    with pytest.raises(
        X509SvidError,
        match=r"ignored as signers: intermediate 'CN=legacy intermediate' "
        r"\(no basicConstraints",
    ):
        verify_x509_svid([leaf.cert, legacy.cert], X509Bundle(TD, (root.cert,)))


def test_a_usable_ca_is_still_found_next_to_an_unusable_twin():
    key = ec.generate_private_key(ec.SECP256R1())
    twin = _signer("root", basic_constraints=None, key=key)
    ca = x509.BasicConstraints(ca=True, path_length=None)
    real = _signer("root", basic_constraints=ca, key=key)
    leaf = make_leaf(real, [LEAF_ID])
    spiffe_id, verified = verify_x509_svid([leaf.cert], X509Bundle(TD, (twin.cert, real.cert)))
    assert str(spiffe_id) == LEAF_ID
    assert verified[-1] == real.cert


def test_a_leaf_pinned_in_the_bundle_is_not_its_own_anchor():
    # go-spiffe accepts a leaf that is itself a bundle "root"; a bundle holds CAs only.
    root = make_ca(TD.name)
    leaf = make_leaf(root, [LEAF_ID])
    with pytest.raises(X509SvidError, match=r"may sign certificates: .*basicConstraints cA"):
        verify_x509_svid([leaf.cert], X509Bundle(TD, (leaf.cert,)))


# --- a chain as the handshake hands it over: DER bytes -------------------------------


def test_der_bytes_are_verified_like_certificates():
    root = make_ca(TD.name)
    leaf = make_leaf(root, [LEAF_ID])
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    assert str(verify_x509_svid([der], X509Bundle(TD, (root.cert,)))[0]) == LEAF_ID


@pytest.mark.parametrize("der", [b"", b"\x00", b"\x30\x03\x02\x01\x01", b"\x30" + b"\xff" * 9])
def test_bytes_that_are_no_certificate_are_an_x509_svid_error(der):
    root = make_ca(TD.name)
    leaf = make_leaf(root, [LEAF_ID]).cert.public_bytes(serialization.Encoding.DER)
    for chain in ([der], [leaf, der]):
        with pytest.raises(X509SvidError, match=r"chain\[\d\] is not a DER certificate") as e:
            verify_x509_svid(chain, X509Bundle(TD, (root.cert,)))
        assert isinstance(e.value, IdentityError)


def _der_with_version(version_byte: int) -> tuple[bytes, Issued]:
    root = make_ca(TD.name)
    der = bytearray(make_leaf(root, [LEAF_ID]).cert.public_bytes(serialization.Encoding.DER))
    at = bytes(der).index(b"\xa0\x03\x02\x01\x02") + 4  # [0] EXPLICIT INTEGER 2 (v3)
    der[at] = version_byte
    return bytes(der), root


def test_unknown_certificate_version_is_an_error_not_invalid_version():
    # cryptography raises InvalidVersion, which is not a ValueError; found by fuzzing.
    der, root = _der_with_version(0x12)
    with pytest.raises(X509SvidError, match=r"chain\[0\] .*unsupported certificate version"):
        verify_x509_svid([der], X509Bundle(TD, (root.cert,)))
    with pytest.raises(BundleError, match="certificate 0: unsupported certificate version"):
        X509Bundle.parse_der(TD, der)
    with pytest.raises(X509SvidError, match="unsupported certificate version"):
        X509Svid.parse_der(der, b"")


def test_leaf_key_of_unknown_algorithm_is_an_x509_svid_error():
    # An OID edit turns the leaf key into one cryptography cannot read (UnsupportedAlgorithm,
    # not a ValueError); the SVID's private key then cannot be shown to match it.
    root = make_ca(TD.name)
    leaf = make_leaf(root, [LEAF_ID])
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    ec_public_key_oid = bytes.fromhex("06072a8648ce3d0201")  # 1.2.840.10045.2.1
    der = der.replace(ec_public_key_oid, bytes.fromhex("06072a8648ce3d0209"), 1)
    key_der = leaf.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(X509SvidError, match="leaf certificate does not match private key"):
        X509Svid.parse_der(der, key_der)
