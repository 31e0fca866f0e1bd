"""The Enterprise Root CA and the per-trust-domain intermediates that SPIRE servers chain to.

Why name constraints: both trust domains' bundles contain the same Enterprise Root, so
without them the upstream server's CA could mint `spiffe://downstream.example.org/...` and
every verifier would accept it. Each intermediate therefore permits only URIs whose host is
its own trust domain (RFC 5280 URI constraint = exact host). OpenSSL and Go enforce this.

Why no EKU on CA certificates: an EKU on a CA restricts everything below it in Go's
verifier, and SPIRE's X.509-SVIDs need both serverAuth and clientAuth.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spire_fabric._atomic import write_atomic
from spire_fabric.identity import TrustDomain, as_trust_domain

__all__ = [
    "CaFiles",
    "CertificateAuthority",
    "SigningCa",
    "create_root_ca",
    "issue_intermediate_ca",
    "load_ca",
    "write_atomic",
    "write_ca",
]

_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate, its key, and its chain up to (and including) the root."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]  # certificate first, root last

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def permitted_trust_domain(self) -> TrustDomain | None:
        """The trust domain this CA may issue for, or None when unconstrained (the root)."""
        try:
            ext = self.certificate.extensions.get_extension_for_class(x509.NameConstraints)
        except x509.ExtensionNotFound:
            return None
        uris = [
            n.value
            for n in ext.value.permitted_subtrees or ()
            if isinstance(n, x509.UniformResourceIdentifier)
        ]
        return TrustDomain.parse(uris[0]) if len(uris) == 1 else None


@dataclass(frozen=True)
class CaFiles:
    """Where a CA lives on disk, in the layout SPIRE's `disk` UpstreamAuthority reads."""

    cert_path: Path  # the CA certificate followed by its intermediates (not the root)
    key_path: Path  # PKCS#8 PEM, mode 0600
    bundle_path: Path  # the root certificate: what SPIRE puts in the trust bundle


@dataclass(frozen=True)
class SigningCa:
    """What a server's disk UpstreamAuthority needs, as PEM: its intermediate (with the
    chain below the root), the intermediate's key, and the root(s) it publishes for the
    trust bundle."""

    chain: bytes
    key: bytes
    root: bytes


def create_root_ca(
    common_name: str = "Enterprise Root CA",
    *,
    organization: str = "spire_fabric",
    ttl: dt.timedelta = dt.timedelta(days=3650),
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """A self-signed, unconstrained root (offline in real life; the installer makes one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name, organization)
    start = (now or dt.datetime.now(dt.timezone.utc)) - _CLOCK_SKEW
    cert = (
        _ca_builder(name, name, key.public_key(), start, start + ttl, path_length=None)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate=cert, private_key=key, chain=(cert,))


def issue_intermediate_ca(
    parent: CertificateAuthority,
    trust_domain: TrustDomain | str,
    *,
    common_name: str | None = None,
    organization: str = "spire_fabric",
    ttl: dt.timedelta = dt.timedelta(days=365),
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """An intermediate that may only issue for `trust_domain` (URI name constraint).

    Path length 1 leaves room for exactly one more CA below it: SPIRE's own signing CA.
    """
    td = as_trust_domain(trust_domain)
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or dt.datetime.now(dt.timezone.utc)) - _CLOCK_SKEW
    not_after = min(start + ttl, parent.certificate.not_valid_after_utc)
    subject = _name(common_name or f"{td.name} Intermediate CA", organization)
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.UniformResourceIdentifier(td.name)], excluded_subtrees=None
    )
    cert = (
        _ca_builder(
            subject,
            parent.certificate.subject,
            key.public_key(),
            start,
            not_after,
            path_length=1,
        )
        .add_extension(constraints, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.private_key.public_key()),
            critical=False,
        )
        .sign(parent.private_key, hashes.SHA256())
    )
    return CertificateAuthority(certificate=cert, private_key=key, chain=(cert, *parent.chain))


def write_ca(ca: CertificateAuthority, directory: Path, name: str) -> CaFiles:
    """Write `<name>.crt`, `<name>.key` (0600) and `<name>-bundle.crt` into a 0700 dir.

    Files are written to a temp name and renamed, so a crash never leaves half a key.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    files = CaFiles(
        cert_path=directory / f"{name}.crt",
        key_path=directory / f"{name}.key",
        bundle_path=directory / f"{name}-bundle.crt",
    )
    up_to_root = ca.chain[:-1] if len(ca.chain) > 1 else ca.chain
    write_atomic(files.cert_path, _pem(up_to_root), 0o644)
    write_atomic(
        files.key_path,
        ca.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    write_atomic(files.bundle_path, _pem([ca.root]), 0o644)
    return files


def load_ca(files: CaFiles) -> CertificateAuthority:
    """Read back what `write_ca` wrote (or a user-supplied CA in the same layout)."""
    chain = x509.load_pem_x509_certificates(files.cert_path.read_bytes())
    roots = x509.load_pem_x509_certificates(files.bundle_path.read_bytes())
    key = serialization.load_pem_private_key(files.key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.key_path}: expected an EC private key")
    leaf_key = chain[0].public_key()
    if (
        not isinstance(leaf_key, ec.EllipticCurvePublicKey)
        or leaf_key.public_numbers() != key.public_key().public_numbers()
    ):
        raise ValueError(f"{files.key_path} does not match the certificate {files.cert_path}")
    full = tuple(chain) if chain[-1] == roots[0] else (*chain, roots[0])
    return CertificateAuthority(certificate=chain[0], private_key=key, chain=full)


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    path_length: int | None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
