"""X509-SVID chain verification against the bundle of the peer's own trust domain.

Behaves like go-spiffe ``x509svid.Verify``. The chain itself is checked by OpenSSL (via
pyOpenSSL), not by ``cryptography.x509.verification``: the latter refuses every chain that
carries a URI name constraint, and our CA hierarchy relies on exactly those constraints to
stop one trust domain's CA from minting IDs of another (see DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, cast

from cryptography import x509
from OpenSSL import crypto

from ._certs import load_der_certificate
from ._errors import X509SvidError
from ._sources import X509BundleSource, is_pyspiffe
from ._spiffe_id import SpiffeId
from ._x509_svid import (
    CertificateProblem,
    id_from_certificate,
    is_ca,
    key_usage,
    signing_problem,
)

if TYPE_CHECKING:
    import spiffe

__all__ = ["verify_x509_svid"]


def _fail(reason: str) -> X509SvidError:
    return X509SvidError(f"x509svid: {reason}")


def _subject(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string() or "<empty subject>"
    except ValueError:
        return "<unreadable subject>"


def _load_chain(chain: Sequence[x509.Certificate | bytes]) -> list[x509.Certificate]:
    """Certificates as given, DER bytes (what a handshake hands over) parsed here."""
    certs: list[x509.Certificate] = []
    for i, item in enumerate(chain):
        if isinstance(item, x509.Certificate):
            certs.append(item)
            continue
        if not isinstance(item, (bytes, bytearray, memoryview)):
            raise TypeError(f"chain[{i}] must be a Certificate or DER bytes")
        try:
            certs.append(load_der_certificate(bytes(item)))
        except ValueError as e:
            raise _fail(f"chain[{i}] is not a DER certificate: {e}") from None
    return certs


def _check_leaf(leaf: x509.Certificate) -> SpiffeId:
    try:
        spiffe_id = id_from_certificate(leaf)
    except CertificateProblem as e:
        raise _fail(f"could not get leaf SPIFFE ID: {e}") from None
    try:
        leaf_is_ca, usage = is_ca(leaf), key_usage(leaf)
    except CertificateProblem as e:
        raise _fail(f"leaf certificate: {e}") from None
    if leaf_is_ca:
        raise _fail("leaf certificate with CA flag set to true")
    if usage is not None and usage.key_cert_sign:
        raise _fail("leaf certificate with KeyCertSign key usage")
    if usage is not None and usage.crl_sign:
        raise _fail("leaf certificate with KeyCrlSign key usage")
    return spiffe_id


def _signers(certs: Sequence[x509.Certificate], role: str) -> tuple[list[crypto.X509], list[str]]:
    """The certificates allowed to sign (as OpenSSL objects), and why the others are not.

    Filtering before OpenSSL builds the chain (rather than checking the chain it picked)
    means a usable CA is still found when an unusable twin sits next to it, as go's
    verifier, which tries every candidate, would find it.
    """
    usable: list[crypto.X509] = []
    ignored: list[str] = []
    for cert in certs:
        problem = signing_problem(cert)
        if problem is None:
            try:
                usable.append(crypto.X509.from_cryptography(cert))
                continue
            except crypto.Error as e:
                problem = f"OpenSSL cannot read it: {e}"
        ignored.append(f"{role} {_subject(cert)!r} ({problem})")
    return usable, ignored


def _openssl_failure(e: crypto.X509StoreContextError, ignored: list[str]) -> X509SvidError:
    depth = e.errors[1] if len(e.errors) > 1 else "?"
    try:
        subject = _subject(e.certificate.to_cryptography())
    except (AttributeError, ValueError):
        subject = "<unknown certificate>"
    note = f"; ignored as signers: {', '.join(ignored)}" if ignored else ""
    return _fail(
        f"could not verify leaf certificate: {e} (at chain depth {depth}, {subject}){note}"
    )


def verify_x509_svid(
    chain: Sequence[x509.Certificate | bytes],
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet,
    *,
    now: datetime | None = None,
) -> tuple[SpiffeId, list[x509.Certificate]]:
    """Verify a peer's X509-SVID chain (leaf first) and return its ID and verified chain.

    ``chain`` holds certificates or their DER bytes, as a handshake delivers them; bytes
    that do not parse are an X509SvidError like any other refusal. Only the roots of the
    leaf ID's own trust domain are trusted, so a CA of a federated trust domain cannot
    vouch for IDs outside its domain. Every signing certificate, bundle roots included,
    must be a CA by basicConstraints (X509-SVID section 4.1). ``now`` (naive means UTC)
    replaces the current time for validity checks. The returned chain runs from the leaf
    to the bundle authority that anchored it. ``bundle_source`` may be a py-spiffe
    ``X509Source`` or ``X509BundleSet``.
    """
    source = cast(X509BundleSource, bundle_source)
    if is_pyspiffe(bundle_source):
        from ._pyspiffe import x509_bundle_source_of

        source = x509_bundle_source_of(bundle_source)
    certs = _load_chain(chain)
    if not certs:
        raise _fail("empty certificates chain")
    leaf = certs[0]
    spiffe_id = _check_leaf(leaf)

    td = spiffe_id.trust_domain
    bundle = source.get_x509_bundle_for_trust_domain(td)
    if bundle is None:
        raise _fail(
            f"could not get X509 bundle: no X.509 bundle found for trust domain {td.name!r}"
        )
    if bundle.trust_domain != td:
        raise _fail(
            "could not get X509 bundle: source returned the bundle of "
            f"{bundle.trust_domain.name!r} for trust domain {td.name!r}"
        )
    if not bundle.x509_authorities:
        raise _fail(f"could not verify leaf certificate: X.509 bundle of {td.name!r} is empty")

    anchors, ignored = _signers(bundle.x509_authorities, "bundle authority")
    intermediates, ignored_intermediates = _signers(certs[1:], "intermediate")
    ignored += ignored_intermediates
    if not anchors:
        raise _fail(
            f"could not verify leaf certificate: no authority in the X.509 bundle of "
            f"{td.name!r} may sign certificates: {', '.join(ignored)}"
        )
    try:
        leaf_x509 = crypto.X509.from_cryptography(leaf)
    except crypto.Error as e:
        raise _fail(f"leaf certificate cannot be read by OpenSSL: {e}") from None

    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(anchor)
    # Go's verifier treats every certificate in Roots as a trust anchor, self-signed or not;
    # PARTIAL_CHAIN gives OpenSSL the same semantics.
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    if now is not None:
        # pyOpenSSL reads timetuple() as UTC, so hand it a UTC datetime.
        if now.tzinfo is not None:
            now = now.astimezone(timezone.utc)
        store.set_time(now)

    try:
        context = crypto.X509StoreContext(store, leaf_x509, chain=intermediates)
        verified = context.get_verified_chain()
    except crypto.X509StoreContextError as e:
        raise _openssl_failure(e, ignored) from None
    except crypto.Error as e:
        raise _fail(f"could not verify leaf certificate: OpenSSL error {e}") from None
    return spiffe_id, [c.to_cryptography() for c in verified]
