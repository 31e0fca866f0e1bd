from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from spire_fabric.identity import SpiffeId, X509Svid, X509SvidError, spiffe_id_from_certificate

from ._pki import make_ca, make_leaf


@pytest.fixture(scope="module")
def root():
    return make_ca("example.org")


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _der_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_parse_pem_reads_chain_key_and_id(root):
    intermediate = make_ca("example.org", issuer=root, label="intermediate")
    leaf = make_leaf(intermediate, ["spiffe://example.org/web"])
    chain_pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (leaf.cert, intermediate.cert)
    )

    svid = X509Svid.parse_pem(chain_pem, _pem_key(leaf.key))

    assert svid.spiffe_id == SpiffeId.parse("spiffe://example.org/web")
    assert svid.leaf == leaf.cert
    assert svid.cert_chain == (leaf.cert, intermediate.cert)
    assert svid.cert_chain_pem() == chain_pem
    assert X509Svid.parse_pem(svid.cert_chain_pem(), svid.private_key_pem()) == svid


def test_parse_der_reads_concatenated_certificates(root):
    intermediate = make_ca("example.org", issuer=root, label="intermediate")
    leaf = make_leaf(intermediate, ["spiffe://example.org/web"])
    der = b"".join(
        c.public_bytes(serialization.Encoding.DER) for c in (leaf.cert, intermediate.cert)
    )
    svid = X509Svid.parse_der(der, _der_key(leaf.key), hint="internal")
    assert svid.cert_chain == (leaf.cert, intermediate.cert)
    assert svid.hint == "internal"


def test_key_that_does_not_belong_to_the_leaf_is_rejected(root):
    leaf = make_leaf(root, ["spiffe://example.org/web"])
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(X509SvidError, match="leaf certificate does not match private key"):
        X509Svid.parse_pem(leaf.cert.public_bytes(serialization.Encoding.PEM), _pem_key(other))


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"ca": True}, "must not have CA flag set to true"),
        ({"key_cert_sign": True}, "must not have 'keyCertSign'"),
        ({"crl_sign": True}, "must not have 'cRLSign'"),
        ({"digital_signature": False}, "must have 'digitalSignature'"),
    ],
)
def test_leaf_unfit_for_an_svid_is_rejected_on_parse(root, flags, reason):
    leaf = make_leaf(root, ["spiffe://example.org/web"], **flags)
    with pytest.raises(X509SvidError, match=reason):
        X509Svid.parse_der(leaf.cert.public_bytes(serialization.Encoding.DER), _der_key(leaf.key))


def test_signing_certificate_that_is_not_a_ca_is_rejected(root):
    leaf = make_leaf(root, ["spiffe://example.org/web"])
    not_a_ca = make_leaf(root, ["spiffe://example.org/other"])
    with pytest.raises(X509SvidError, match="signing certificate 1 must have CA flag"):
        X509Svid(leaf_id(leaf), (leaf.cert, not_a_ca.cert), leaf.key)


def test_constructing_with_an_id_other_than_the_leafs_is_rejected(root):
    leaf = make_leaf(root, ["spiffe://example.org/web"])
    with pytest.raises(X509SvidError, match=r"is for spiffe://example\.org/web, not for"):
        X509Svid(SpiffeId.parse("spiffe://example.org/db"), (leaf.cert,), leaf.key)


def test_garbage_der_names_the_certificate_index():
    with pytest.raises(X509SvidError, match="certificate 0"):
        X509Svid.parse_der(b"\x04\x01\x00", b"")


def test_repr_does_not_show_the_private_key(root):
    leaf = make_leaf(root, ["spiffe://example.org/web"])
    svid = X509Svid(leaf_id(leaf), (leaf.cert,), leaf.key)
    assert "private_key" not in repr(svid)


def leaf_id(issued) -> SpiffeId:
    return spiffe_id_from_certificate(issued.cert)
