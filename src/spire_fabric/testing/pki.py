"""In-memory SPIRE-shaped CAs and X509-SVIDs, for tests that need certificates without SPIRE
(e.g. a forged peer, or a rotation driven by the test itself)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from spire_fabric.identity import SpiffeId, TrustDomain, X509Bundle, X509Svid


@dataclass(frozen=True)
class Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def bundle(self, trust_domain: str) -> X509Bundle:
        return X509Bundle(TrustDomain(trust_domain), (self.cert,))


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(trust_domain: str, label: str = "CA", *, issuer: Ca | None = None) -> Ca:
    """A CA with SPIRE's shape (URI SAN = the trust domain ID): self-signed, or under
    ``issuer`` (an intermediate, as a server under an UpstreamAuthority holds), with the
    authority key ID SPIRE writes so a chain can be followed by key IDs."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} {label}")])
    now = datetime.now(timezone.utc)
    signer_key = issuer.key if issuer else key
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
        .sign(signer_key, hashes.SHA256())
    )
    return Ca(cert, key)


def make_svid(ca: Ca, spiffe_id: str, *, ttl: timedelta = timedelta(hours=1)) -> X509Svid:
    """An X509-SVID for ``spiffe_id`` signed by ``ca``, whatever trust domain ``ca`` is for.

    Signing an ID of another trust domain is how tests forge a peer.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workload")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return X509Svid(SpiffeId.parse(spiffe_id), (cert,), key)


class MutableSvidSource:
    """An SVID source whose SVID a test replaces, the way a Workload API source rotates.

    For an SVID that does not change, pass the ``X509Svid`` itself: it is its own source.
    """

    def __init__(self, svid: X509Svid) -> None:
        self.svid = svid

    def get_x509_svid(self) -> X509Svid:
        return self.svid
