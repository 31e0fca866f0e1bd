"""X509-SVID value and the certificate checks go-spiffe's x509svid package makes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ._certs import (
    EXTENSION_ERRORS,
    certificates_to_pem,
    load_der_certificates,
    load_pem_certificates,
)
from ._errors import SpiffeIdError, X509SvidError
from ._spiffe_id import SpiffeId

if TYPE_CHECKING:
    import spiffe

__all__ = ["X509Svid", "spiffe_id_from_certificate"]


class CertificateProblem(ValueError):
    """Unprefixed reason a certificate is unfit; callers add the context (leaf, signing)."""


def _uri_sans(cert: x509.Certificate) -> list[str]:
    san = _extension(cert, x509.SubjectAlternativeName)
    return [] if san is None else san.get_values_for_type(x509.UniformResourceIdentifier)


def id_from_certificate(cert: x509.Certificate) -> SpiffeId:
    uris = _uri_sans(cert)
    if not uris:
        raise CertificateProblem("certificate contains no URI SAN")
    if len(uris) > 1:
        raise CertificateProblem(f"certificate contains more than one URI SAN ({len(uris)})")
    try:
        return SpiffeId.parse(uris[0])
    except SpiffeIdError as e:
        raise CertificateProblem(str(e)) from None


def spiffe_id_from_certificate(cert: x509.Certificate) -> SpiffeId:
    """The SPIFFE ID in the certificate's single URI SAN (go-spiffe ``IDFromCert``)."""
    try:
        return id_from_certificate(cert)
    except CertificateProblem as e:
        raise X509SvidError(f"x509svid: {e}") from None


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    """The value of the certificate's ``kind`` extension, or None if it has none.

    cryptography parses extensions lazily, so a certificate that loaded fine can still
    raise ValueError here (duplicate or malformed extensions); that is a problem with the
    certificate, reported as one.
    """
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except EXTENSION_ERRORS as e:
        raise CertificateProblem(f"malformed extensions: {e}") from None


def is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return constraints is not None and constraints.ca


def key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    usage: x509.KeyUsage | None = _extension(cert, x509.KeyUsage)
    return usage


def signing_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` may not sign certificates in an X509-SVID chain, or None if it may.

    X509-SVID spec section 4.1: signing certificates MUST set ``cA`` to true; section
    4.3: they MUST set ``keyCertSign`` (when key usage is present, as RFC 5280 section
    4.2.1.3 reads it). OpenSSL still accepts a trust anchor without basicConstraints if
    it has keyCertSign (its legacy rule), go's verifier accepts a v1 root without any
    extensions, and both accept a leaf placed in the bundle; all are refused here.
    """
    try:
        constraints = _extension(cert, x509.BasicConstraints)
        usage = key_usage(cert)
    except CertificateProblem as e:
        return str(e)
    if constraints is None:
        return "no basicConstraints extension (signing certificates must set cA=true)"
    if not constraints.ca:
        return "basicConstraints cA is false"
    if usage is not None and not usage.key_cert_sign:
        return "key usage lacks keyCertSign"
    return None


def _validate_leaf(leaf: x509.Certificate) -> SpiffeId:
    try:
        spiffe_id = id_from_certificate(leaf)
    except CertificateProblem as e:
        raise CertificateProblem(f"cannot get leaf certificate SPIFFE ID: {e}") from None
    if is_ca(leaf):
        raise CertificateProblem("leaf certificate must not have CA flag set to true")
    usage = key_usage(leaf)
    # X509-SVID spec 4.3: leaf MUST set digitalSignature and MUST NOT set keyCertSign/cRLSign.
    if usage is None or not usage.digital_signature:
        raise CertificateProblem("leaf certificate must have 'digitalSignature' set as key usage")
    if usage.key_cert_sign:
        raise CertificateProblem("leaf certificate must not have 'keyCertSign' set as key usage")
    if usage.crl_sign:
        raise CertificateProblem("leaf certificate must not have 'cRLSign' set as key usage")
    return spiffe_id


def _validate_signing_certificates(certs: Sequence[x509.Certificate]) -> None:
    for i, cert in enumerate(certs, start=1):
        if not is_ca(cert):
            raise CertificateProblem(f"signing certificate {i} must have CA flag set to true")
        usage = key_usage(cert)
        if usage is None or not usage.key_cert_sign:
            raise CertificateProblem(
                f"signing certificate {i} must have 'keyCertSign' set as key usage"
            )


def _public_bytes(key: object) -> bytes:
    der: bytes = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


@dataclass(frozen=True)
class X509Svid:
    """An X509-SVID with its private key, validated on construction like go-spiffe's
    ``x509svid.Parse``: the ID must be the leaf's, the leaf an end-entity signing cert,
    the rest CA certs, and the key must belong to the leaf.
    """

    spiffe_id: SpiffeId
    cert_chain: tuple[x509.Certificate, ...]
    private_key: PrivateKeyTypes = field(repr=False, compare=False)
    hint: str = ""

    def __post_init__(self) -> None:
        chain = tuple(self.cert_chain)
        object.__setattr__(self, "cert_chain", chain)
        if not chain:
            raise X509SvidError("x509svid: certificate validation failed: no certificates found")
        try:
            leaf_id = _validate_leaf(chain[0])
            _validate_signing_certificates(chain[1:])
        except CertificateProblem as e:
            raise X509SvidError(f"x509svid: certificate validation failed: {e}") from None
        if leaf_id != self.spiffe_id:
            raise X509SvidError(
                f"x509svid: leaf certificate is for {leaf_id}, not for {self.spiffe_id}"
            )
        try:
            matches = _public_bytes(self.private_key.public_key()) == _public_bytes(
                chain[0].public_key()
            )
        except (AttributeError, TypeError, ValueError, UnsupportedAlgorithm):
            # A leaf key cryptography cannot read cannot be shown to match either.
            matches = False
        if not matches:
            raise X509SvidError(
                "x509svid: private key validation failed: leaf certificate does not match "
                "private key"
            )

    @classmethod
    def _from_parts(
        cls, certs: Sequence[x509.Certificate], key: PrivateKeyTypes, hint: str
    ) -> X509Svid:
        if not certs:
            raise X509SvidError("x509svid: certificate validation failed: no certificates found")
        try:
            spiffe_id = _validate_leaf(certs[0])
        except CertificateProblem as e:
            raise X509SvidError(f"x509svid: certificate validation failed: {e}") from None
        return cls(spiffe_id, tuple(certs), key, hint)

    @classmethod
    def parse_pem(cls, cert_pem: bytes, key_pem: bytes, *, hint: str = "") -> X509Svid:
        """From a PEM chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1)."""
        try:
            certs = load_pem_certificates(cert_pem)
        except ValueError as e:
            raise X509SvidError(f"x509svid: cannot parse PEM encoded certificate: {e}") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            raise X509SvidError(f"x509svid: cannot parse PEM encoded private key: {e}") from None
        return cls._from_parts(certs, key, hint)

    @classmethod
    def parse_der(cls, cert_der: bytes, key_der: bytes, *, hint: str = "") -> X509Svid:
        """From concatenated DER certificates and a DER PKCS#8 key (the Workload API form)."""
        try:
            certs = load_der_certificates(cert_der)
        except ValueError as e:
            raise X509SvidError(f"x509svid: cannot parse DER encoded certificate: {e}") from None
        try:
            key = serialization.load_der_private_key(key_der, password=None)
        except (ValueError, TypeError) as e:
            raise X509SvidError(f"x509svid: cannot parse DER encoded private key: {e}") from None
        return cls._from_parts(certs, key, hint)

    @classmethod
    def from_spiffe(cls, svid: spiffe.X509Svid) -> X509Svid:
        """Convert from py-spiffe, checking the chain and ID as ``parse_der`` does."""
        return cls._from_parts(list(svid.cert_chain), svid.private_key, "")

    @property
    def leaf(self) -> x509.Certificate:
        """The SVID's own certificate (the first of the chain)."""
        return self.cert_chain[0]

    def get_x509_svid(self) -> X509Svid:
        """This SVID: a fixed SVID is its own ``X509SvidSource``, so it can be passed
        wherever a source is taken (``mtls_client_context(svid, bundle, ...)``)."""
        return self

    def cert_chain_pem(self) -> bytes:
        """The chain, leaf first, as concatenated PEM."""
        return certificates_to_pem(self.cert_chain)

    def private_key_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM, e.g. for ``ssl.SSLContext.load_cert_chain``."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        expires = self.leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
        hint = f", hint={self.hint!r}" if self.hint else ""
        return (
            f"X509Svid({str(self.spiffe_id)!r}, {len(self.cert_chain)} certificates, "
            f"expires {expires}{hint})"
        )

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.x509_svid(self)

    def to_spiffe(self) -> spiffe.X509Svid:
        """The py-spiffe equivalent (``spiffe.X509Svid``), same chain and key."""
        import spiffe

        return spiffe.X509Svid(self.spiffe_id.to_spiffe(), list(self.cert_chain), self.private_key)
