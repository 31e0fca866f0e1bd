"""X509-SVID chain verification against the bundle of the peer's own trust domain.

Behaves like go-spiffe ``x509svid.Verify``. The chain itself is checked by OpenSSL (via
pyOpenSSL), not by ``cryptography.x509.verification``: the latter refuses every chain that
carries a URI name constraint, and our CA hierarchy relies on exactly those constraints to
stop one trust domain's CA from minting IDs of another (see DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from cryptography import x509
from OpenSSL import crypto

from ._bundle_source import X509BundleSource
from ._errors import X509SvidError
from ._spiffe_id import SpiffeId
from ._x509_svid import CertificateProblem, id_from_certificate, is_ca, key_usage

__all__ = ["verify_x509_svid"]


def _fail(reason: str) -> X509SvidError:
    return X509SvidError(f"x509svid: {reason}")


def verify_x509_svid(
    chain: Sequence[x509.Certificate],
    bundle_source: X509BundleSource,
    *,
    now: datetime | None = None,
) -> tuple[SpiffeId, list[x509.Certificate]]:
    """Verify a peer's X509-SVID chain (leaf first) and return its ID and verified chain.

    Only the roots of the leaf ID's own trust domain are trusted, so a CA of a federated
    trust domain cannot vouch for IDs outside its domain. ``now`` (naive means UTC)
    replaces the current time for validity checks. The returned chain runs from the leaf
    to the bundle authority that anchored it.
    """
    if not chain:
        raise _fail("empty certificates chain")
    leaf = chain[0]
    try:
        spiffe_id = id_from_certificate(leaf)
    except CertificateProblem as e:
        raise _fail(f"could not get leaf SPIFFE ID: {e}") from None

    if is_ca(leaf):
        raise _fail("leaf certificate with CA flag set to true")
    usage = key_usage(leaf)
    if usage is not None and usage.key_cert_sign:
        raise _fail("leaf certificate with KeyCertSign key usage")
    if usage is not None and usage.crl_sign:
        raise _fail("leaf certificate with KeyCrlSign key usage")

    td = spiffe_id.trust_domain
    bundle = bundle_source.get_x509_bundle_for_trust_domain(td)
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

    store = crypto.X509Store()
    for authority in bundle.x509_authorities:
        store.add_cert(crypto.X509.from_cryptography(authority))
    # Go's verifier treats every certificate in Roots as a trust anchor, self-signed or not;
    # PARTIAL_CHAIN gives OpenSSL the same semantics.
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    if now is not None:
        # pyOpenSSL reads timetuple() as UTC, so hand it a UTC datetime.
        if now.tzinfo is not None:
            now = now.astimezone(timezone.utc)
        store.set_time(now)

    context = crypto.X509StoreContext(
        store,
        crypto.X509.from_cryptography(leaf),
        chain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
    )
    try:
        verified = context.get_verified_chain()
    except crypto.X509StoreContextError as e:
        depth = e.errors[1] if len(e.errors) > 1 else "?"
        subject = e.certificate.to_cryptography().subject.rfc4514_string() or "<empty subject>"
        raise _fail(
            f"could not verify leaf certificate: {e} (at chain depth {depth}, {subject})"
        ) from None
    return spiffe_id, [c.to_cryptography() for c in verified]
