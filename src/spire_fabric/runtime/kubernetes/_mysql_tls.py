"""MySQL's TLS on Kubernetes: a datastore CA of the installer's, one server certificate per
MySQL the target deploys, kept in the state directory (``mysql-tls/``).

Why a CA of its own and not the Enterprise Root: the root is in every SPIRE trust bundle, so
a DNS certificate it signed would be trusted wherever those bundles are; the datastore CA is
trusted by exactly one thing, each SPIRE server's connection to its MySQL (``root_ca_path``).
Its key never enters a cluster (0600 here, like the Enterprise Root's); MySQL gets only its
own certificate and key.

Why not SPIRE-issued: the server must reach its datastore before it can issue anything, so
its datastore's certificate cannot come from it (a files-mode helper could later keep other
databases' certificates fresh from SPIRE, not this one).

Renewal: a certificate is valid for a year and `up` issues a new one when less than 30 days
remain or its names changed; its digest is on MySQL's pod template, so the new one rolls
MySQL (which reads it at start).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from spire_fabric.render.kubernetes import DatastoreTlsPem, mysql_dns_names, mysql_instance
from spire_fabric.runtime.ca_hierarchy import CaFiles, create_root_ca, load_ca, write_ca
from spire_fabric.topology import Server, Topology

__all__ = ["MySqlTlsStore"]

CA_NAME = "datastore-ca"
CA_TTL = dt.timedelta(days=3650)
CERT_TTL = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
_CLOCK_SKEW = dt.timedelta(minutes=5)


class MySqlTlsStore:
    """``<dir>/datastore-ca.crt|.key`` and ``<dir>/<server>.crt|.key`` per MySQL."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def values(self, topology: Topology, *, make: bool) -> dict[str, DatastoreTlsPem]:
        """The PEMs by server. ``make`` creates the CA and (re)issues certificates that are
        missing, expiring or name other hosts, as `up` does; `plan` and `render` make
        nothing and get what is on disk."""
        servers = [s for s in topology.servers
                   if s.kubernetes is not None and mysql_instance(s) is not None]  # fmt: skip
        if not servers:
            return {}
        ca_files = CaFiles(*(self.directory / f"{CA_NAME}{ext}"
                             for ext in (".crt", ".key", "-bundle.crt")))  # fmt: skip
        if make and not ca_files.key_path.exists():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            ca = create_root_ca(f"MySQL datastore CA ({topology.name})", ttl=CA_TTL)
            write_ca(ca, self.directory, CA_NAME)
        if not ca_files.key_path.exists():
            return {}
        ca_pem = ca_files.cert_path.read_bytes()
        out: dict[str, DatastoreTlsPem] = {}
        for s in servers:
            cert, key = self._paths(s)
            if make and _needs_issuing(cert, mysql_dns_names(s)):
                _issue(ca_files, s, cert, key)
            if cert.exists() and key.exists():
                out[s.name] = DatastoreTlsPem(cert.read_bytes(), key.read_bytes(), ca_pem)
        return out

    def _paths(self, server: Server) -> tuple[Path, Path]:
        return self.directory / f"{server.name}.crt", self.directory / f"{server.name}.key"


def _needs_issuing(cert_path: Path, names: tuple[str, ...]) -> bool:
    if not cert_path.exists():
        return True
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) < RENEW_BEFORE:
        return True
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return tuple(san.get_values_for_type(x509.DNSName)) != names


def _issue(ca_files: CaFiles, server: Server, cert_path: Path, key_path: Path) -> None:
    """A serverAuth certificate for every name MySQL is dialled by, signed by the CA."""
    ca = load_ca(ca_files)
    names = mysql_dns_names(server)
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.now(dt.timezone.utc) - _CLOCK_SKEW
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "spire_fabric"),
                         x509.NameAttribute(NameOID.COMMON_NAME, names[0])])  # fmt: skip
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                          decipher_only=False)  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + CERT_TTL, ca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
        .sign(ca.private_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
