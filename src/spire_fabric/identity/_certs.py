"""Reading certificate lists in the encodings the Workload API and bundle files use."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

# What cryptography raises for a malformed extension besides ValueError.
EXTENSION_ERRORS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def check_certificate(cert: x509.Certificate) -> x509.Certificate:
    """Read the parts cryptography parses lazily, so a broken one fails now, at parse time.

    go's ``x509.ParseCertificate`` decodes names, public key and extensions eagerly; without
    this a certificate with a corrupt key or duplicate extensions would load here and fail
    later (or, in a bundle, sit there as an authority that can never verify anything).
    ValueError names the broken part. A key of an algorithm cryptography does not know is
    kept, as go keeps it (``UnknownPublicKeyAlgorithm``).
    """
    try:
        cert.subject, cert.issuer  # noqa: B018 - parsed on access
    except ValueError as e:
        raise ValueError(f"malformed name: {e}") from None
    try:
        cert.public_key()
    except UnsupportedAlgorithm:
        pass
    except ValueError as e:
        raise ValueError(f"malformed public key: {e}") from None
    try:
        cert.extensions  # noqa: B018 - parsed on access
    except EXTENSION_ERRORS as e:
        raise ValueError(f"malformed extensions: {e}") from None
    return cert


def load_der_certificate(der: bytes) -> x509.Certificate:
    """One DER certificate, fully read; ValueError (only) if any part of it is malformed.

    cryptography reports an unknown version number as InvalidVersion, which is not a
    ValueError; it is translated so callers need to catch one type.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
    except x509.InvalidVersion as e:
        raise ValueError(f"unsupported certificate version: {e}") from None
    return check_certificate(cert)


def _der_element_end(data: bytes, start: int) -> int:
    """End offset of the DER element (tag, length, value) that begins at ``start``."""
    if len(data) - start < 2:
        raise ValueError("truncated DER header")
    if data[start] != 0x30:
        raise ValueError(f"expected a DER SEQUENCE (0x30), found tag 0x{data[start]:02x}")
    first = data[start + 1]
    header = 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) - start < 2 + count:
            raise ValueError("invalid DER length")
        length = int.from_bytes(data[start + 2 : start + 2 + count], "big")
        header += count
    end = start + header + length
    if end > len(data):
        raise ValueError("truncated DER certificate")
    return end


def load_der_certificates(data: bytes) -> list[x509.Certificate]:
    """Parse concatenated ASN.1 DER certificates (the Workload API's wire format).

    ValueError names the index of the certificate that did not parse.
    """
    certs: list[x509.Certificate] = []
    offset = 0
    while offset < len(data):
        try:
            end = _der_element_end(data, offset)
            certs.append(load_der_certificate(data[offset:end]))
        except ValueError as e:
            raise ValueError(f"certificate {len(certs)}: {e}") from None
        offset = end
    return certs


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Parse every CERTIFICATE block of a PEM document; empty input gives an empty list."""
    if not data.strip():
        return []
    try:
        certs = x509.load_pem_x509_certificates(data)
    except x509.InvalidVersion as e:
        raise ValueError(f"unsupported certificate version: {e}") from None
    for i, cert in enumerate(certs):
        try:
            check_certificate(cert)
        except ValueError as e:
            raise ValueError(f"certificate {i}: {e}") from None
    return certs


def certificates_to_pem(certs: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def certificates_to_der(certs: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.DER) for c in certs)
