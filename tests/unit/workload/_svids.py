"""Minimal SPIRE-shaped certificates for unit tests (no SPIRE needed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spire_fabric.identity import X509Svid

NOW = datetime.now(timezone.utc)


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(True, False, False, False, False, ca, ca, False, False)


def make_ca(trust_domain: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, trust_domain)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_svid_der(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], spiffe_id: str
) -> tuple[bytes, bytes]:
    """(leaf DER, PKCS#8 key DER): the Workload API's X509SVID fields."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "w")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(False), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.DER), key_der


def make_svid(ca, spiffe_id: str, hint: str = "") -> X509Svid:  # type: ignore[no-untyped-def]
    cert, key = make_svid_der(ca, spiffe_id)
    return X509Svid.parse_der(cert, key, hint=hint)
