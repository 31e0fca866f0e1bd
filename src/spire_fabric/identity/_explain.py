"""Why an X.509-SVID chain verifies against a bundle set, or why not, step by step.

``verify_x509_svid`` gives the verdict (OpenSSL's, see ``_x509_verify``); a refusal such as
"permitted subtree violation" names no certificate a person recognises. ``explain_chain``
keeps that verdict and adds, for each certificate from the leaf to the trust anchor, the
facts that decide it: which CA signed it, whether it is within its validity, which name
constraint it carries and whether the leaf's SPIFFE ID falls inside it, and whether the
anchor is in the bundle of the leaf's own trust domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509

from spire_fabric._html import duration

from ._errors import X509SvidError
from ._sources import X509BundleSource
from ._spiffe_id import SpiffeId, TrustDomain
from ._x509_svid import CertificateProblem, X509Svid, id_from_certificate
from ._x509_verify import _load_chain, verify_x509_svid

__all__ = ["ChainExplanation", "ChainFinding", "ChainStep", "explain_chain"]


@dataclass(frozen=True)
class ChainFinding:
    """One fact about one certificate of the chain, good or bad, in words."""

    ok: bool
    text: str


@dataclass(frozen=True)
class ChainStep:
    """One certificate of the path, leaf first: ``role`` is ``leaf``, ``intermediate`` or
    ``bundle authority`` (the trust anchor)."""

    role: str
    certificate: x509.Certificate
    findings: tuple[ChainFinding, ...]

    @property
    def ok(self) -> bool:
        """Whether every finding about this certificate is good."""
        return all(f.ok for f in self.findings)


@dataclass(frozen=True)
class ChainExplanation:
    """The verdict of ``verify_x509_svid`` (``ok``, ``reason``) and the path that explains it."""

    ok: bool
    spiffe_id: SpiffeId | None
    trust_domain: TrustDomain | None
    steps: tuple[ChainStep, ...]
    summary: str
    reason: str = ""

    @property
    def problems(self) -> list[str]:
        """What is wrong, certificate by certificate (empty when the chain verifies)."""
        return [f.text for s in self.steps for f in s.findings if not f.ok]

    def __repr__(self) -> str:
        verdict = "verifies" if self.ok else "refused"
        return f"ChainExplanation({verdict}: {self.summary})"

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.chain_explanation(self)


def _subject(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unreadable subject)"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature is not a ValueError
        return False
    return True


def _uri_host(uri: str) -> str:
    rest = uri.split("://", 1)[-1]
    return rest.split("/", 1)[0].split(":", 1)[0].lower()


def _within(host: str, constraint: str) -> bool:
    """RFC 5280 4.2.1.10 for URIs: a leading '.' matches subdomains, else the host exactly."""
    constraint = constraint.lower()
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


def _name_constraint_findings(ca: x509.Certificate, leaf_uris: list[str]) -> list[ChainFinding]:
    try:
        nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return []
    findings = []
    permitted = [
        n.value
        for n in nc.permitted_subtrees or ()
        if isinstance(n, x509.UniformResourceIdentifier)
    ]
    excluded = [
        n.value for n in nc.excluded_subtrees or () if isinstance(n, x509.UniformResourceIdentifier)
    ]
    for uri in leaf_uris:
        host = _uri_host(uri)
        if permitted:
            inside = any(_within(host, p) for p in permitted)
            findings.append(
                ChainFinding(
                    inside,
                    f"name constraint permits URIs in {', '.join(permitted)}: {uri} is "
                    + ("inside" if inside else "OUTSIDE (permitted subtree violation)"),
                )
            )
        for e in excluded:
            if _within(host, e):
                findings.append(
                    ChainFinding(False, f"name constraint excludes {e}: {uri} is in it")
                )
    return findings


def _validity(cert: x509.Certificate, now: datetime) -> ChainFinding:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return ChainFinding(False, f"not valid before {start:%Y-%m-%d %H:%M:%S} UTC")
    if now > end:
        return ChainFinding(False, f"expired at {end:%Y-%m-%d %H:%M:%S} UTC")
    left = duration((end - now).total_seconds())
    return ChainFinding(True, f"valid until {end:%Y-%m-%d %H:%M:%S} UTC ({left} left)")


def _leaf_uris(leaf: x509.Certificate) -> list[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def explain_chain(
    chain: X509Svid | Sequence[x509.Certificate | bytes],
    bundles: X509BundleSource,
    *,
    now: datetime | None = None,
) -> ChainExplanation:
    """Verify ``chain`` (an X509Svid, or certificates leaf first) against ``bundles`` and
    explain the verdict certificate by certificate.

    The verdict is exactly ``verify_x509_svid``'s; the findings are computed here to name
    the CA, the name constraint or the expiry behind it.
    """
    certs = list(chain.cert_chain) if isinstance(chain, X509Svid) else _load_chain(chain)
    moment = (
        now.astimezone(timezone.utc)
        if now and now.tzinfo
        else (now.replace(tzinfo=timezone.utc) if now else datetime.now(timezone.utc))
    )
    if not certs:
        return ChainExplanation(False, None, None, (), "empty chain", "x509svid: empty chain")
    leaf = certs[0]
    try:
        spiffe_id: SpiffeId | None = id_from_certificate(leaf)
    except CertificateProblem:
        spiffe_id = None
    td = spiffe_id.trust_domain if spiffe_id else None
    bundle = bundles.get_x509_bundle_for_trust_domain(td) if td else None
    anchors = list(bundle.x509_authorities) if bundle else []

    try:
        _, verified = verify_x509_svid(certs, bundles, now=now)
        ok, reason = True, ""
    except X509SvidError as e:
        ok, reason, verified = False, str(e), []

    path = verified or _best_path(certs, anchors)
    uris = _leaf_uris(leaf)
    steps = []
    for i, cert in enumerate(path):
        findings: list[ChainFinding] = [_validity(cert, moment)]
        in_bundle = cert in anchors
        if i == 0:
            role = "leaf"
            td_name = td.name if td is not None else "?"
            if spiffe_id is None:
                findings.append(ChainFinding(False, "leaf carries no valid SPIFFE ID"))
            else:
                findings.append(ChainFinding(True, f"SPIFFE ID {spiffe_id}"))
                findings.append(
                    ChainFinding(
                        bundle is not None,
                        f"trust domain {td_name}: bundle has {len(anchors)} X.509 authorities"
                        if bundle is not None
                        else f"no bundle for trust domain {td_name}",
                    )
                )
        else:
            role = "bundle authority" if in_bundle else "intermediate"
            findings.extend(_name_constraint_findings(cert, uris))
        if i + 1 < len(path):
            issuer = path[i + 1]
            signed = _signed_by(cert, issuer)
            findings.append(
                ChainFinding(
                    signed,
                    f"signed by {_subject(issuer)}"
                    if signed
                    else f"signature does not verify with {_subject(issuer)}",
                )
            )
        elif in_bundle and td is not None:
            findings.append(ChainFinding(True, f"trust anchor: in the bundle of {td.name}"))
        elif td is not None:
            findings.append(
                ChainFinding(False, f"no issuer in the chain or the bundle of {td.name}")
            )
        steps.append(ChainStep(role, cert, tuple(findings)))

    if ok:
        summary = f"{spiffe_id} chains to {_subject(path[-1])} in the bundle of {td.name}"  # type: ignore[union-attr]
    else:
        problems = [f.text for s in steps for f in s.findings if not f.ok]
        summary = problems[0] if problems else reason
    return ChainExplanation(ok, spiffe_id, td, tuple(steps), summary, reason)


def _best_path(
    certs: list[x509.Certificate], anchors: list[x509.Certificate]
) -> list[x509.Certificate]:
    """Leaf to anchor by issuer name and signature, when OpenSSL refused the chain."""
    path = [certs[0]]
    pool = certs[1:] + anchors
    while len(path) <= len(pool):
        current = path[-1]
        if current in anchors:
            break
        issuer = next(
            (
                c
                for c in pool
                if c not in path and c.subject == current.issuer and _signed_by(current, c)
            ),
            None,
        )
        if issuer is None:
            break
        path.append(issuer)
    return path
