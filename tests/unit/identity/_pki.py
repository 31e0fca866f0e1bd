"""A tiny CA kit for tests: SPIRE-shaped roots, intermediates and SVID leaves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes


def _key_usage(*, digital_signature: bool, key_cert_sign: bool, crl_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(subject: str, issuer: Issued | None, key, not_before, not_after):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def make_ca(
    trust_domain: str,
    *,
    issuer: Issued | None = None,
    permitted_uri_subtree: str | None = None,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    label: str = "CA",
) -> Issued:
    """A CA cert with SPIRE's shape (URI SAN = trust domain ID); self-signed if no issuer."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(
            f"{trust_domain} {label}",
            issuer,
            key,
            NOW - timedelta(days=1),
            NOW + timedelta(days=30),
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
    )
    if permitted_uri_subtree is not None:
        builder = builder.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.UniformResourceIdentifier(permitted_uri_subtree)],
                excluded_subtrees=None,
            ),
            critical=True,
        )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_leaf(
    issuer: Issued,
    uris: list[str],
    *,
    ca: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
    digital_signature: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """An X509-SVID leaf; the keyword flags produce the malformed variants tests need."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(
            "workload",
            issuer,
            key,
            not_before or NOW - timedelta(hours=1),
            not_after or NOW + timedelta(hours=1),
        )
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            _key_usage(
                digital_signature=digital_signature,
                key_cert_sign=key_cert_sign,
                crl_sign=crl_sign,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)
