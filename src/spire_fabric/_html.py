"""HTML views of spire_fabric values, for notebooks (``_repr_html_``) and the dashboard.

Why one module: every value that reaches a page passes through :func:`esc` here, so there
is exactly one place to audit for escaping. Classes do not build HTML themselves; their
``_repr_html_`` calls a function of this module. Only :class:`Html` (built here from
escaped parts) is inserted unescaped; anything else, a SPIFFE ID, an entry's hint, a DNS
name, a certificate subject, is escaped with ``html.escape(quote=True)``.

It formats values only and imports nothing of spire_fabric (it reads values by their
attributes), so the lowest layer, ``identity``, can use it. Views that draw a topology are
rendering and live in ``spire_fabric.render``; the topology reaches its notebook view
through :func:`topology_view` (see there why).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa


class Html(str):
    """A string that is already safe HTML (built by this module from escaped parts)."""

    __slots__ = ()


def esc(value: object) -> Html:
    """``value`` as HTML text: escaped unless it is :class:`Html` already."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(esc(sep).join(esc(p) for p in parts))


def tag(name: str, *children: object, **attrs: object) -> Html:
    """``<name attrs>children</name>``; attribute values and children are escaped.

    ``class_`` stands for ``class``; attribute names are ours, never user input.
    """
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None
    )
    return Html(f"<{name}{rendered}>{join(children)}</{name}>")


_TABLE_STYLE = "border-collapse:collapse;font-family:monospace;font-size:12px;text-align:left"
_CELL_STYLE = "border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], caption: str = "") -> Html:
    head = tag("tr", *(tag("th", h, style=_CELL_STYLE) for h in headers))
    body = [tag("tr", *(tag("td", c, style=_CELL_STYLE) for c in row)) for row in rows]
    cap = tag("caption", tag("b", caption), style="text-align:left") if caption else ""
    return tag("table", cap, tag("thead", head), tag("tbody", *body), style=_TABLE_STYLE)


def fields(pairs: Iterable[tuple[str, object]], caption: str = "") -> Html:
    """A two-column table of name/value pairs."""
    rows = [(tag("b", k), v) for k, v in pairs]
    cap = tag("caption", tag("b", caption), style="text-align:left") if caption else ""
    body = [tag("tr", *(tag("td", c, style=_CELL_STYLE) for c in row)) for row in rows]
    return tag("table", cap, tag("tbody", *body), style=_TABLE_STYLE)


def badge(ok: bool | None, text: str | None = None) -> Html:
    colour = {True: "#1a7f37", False: "#cf222e", None: "#9a6700"}[ok]
    label = text if text is not None else {True: "ok", False: "failed", None: "unknown"}[ok]
    return tag("span", label, style=f"color:{colour};font-weight:bold")


def details(summary: object, *body: object, open_: bool = False) -> Html:
    return tag("details", tag("summary", summary), *body, open="" if open_ else None)


def pre(text: str) -> Html:
    return tag("pre", text, style="font-size:12px")


# -- time --------------------------------------------------------------------------------


def utc(when: datetime | int | float | None) -> datetime | None:
    if when is None:
        return None
    if isinstance(when, (int, float)):
        return None if when <= 0 else datetime.fromtimestamp(when, timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def duration(seconds: float) -> str:
    """``3h 59m``, ``4d 2h``, ``42s``: a human span (sign dropped)."""
    s = int(abs(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{s}s"


def time_left(when: datetime | int | float | None, now: datetime | None = None) -> str:
    """``3h 59m left`` or ``expired 5m 0s ago``; ``never`` for no expiry."""
    end = utc(when)
    if end is None:
        return "never"
    left = (end - (now or datetime.now(timezone.utc))).total_seconds()
    return f"{duration(left)} left" if left >= 0 else f"expired {duration(left)} ago"


def timestamp(when: datetime | int | float | None) -> str:
    moment = utc(when)
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# -- certificates ------------------------------------------------------------------------


def key_type(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, colon-separated upper-case hex (as ``openssl x509 -fingerprint``)."""
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def subject(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unreadable subject)"


def _ext(cert: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def uri_sans(cert: x509.Certificate) -> list[str]:
    san = _ext(cert, x509.SubjectAlternativeName)
    return [] if san is None else list(san.get_values_for_type(x509.UniformResourceIdentifier))


def name_constraints(cert: x509.Certificate) -> str:
    """``permitted URI: downstream.example.org`` etc., or ``none``."""
    nc = _ext(cert, x509.NameConstraints)
    if nc is None:
        return "none"
    parts = []
    for label, subtrees in (
        ("permitted", nc.permitted_subtrees),
        ("excluded", nc.excluded_subtrees),
    ):
        for name in subtrees or ():
            kind = (
                "URI" if isinstance(name, x509.UniformResourceIdentifier) else type(name).__name__
            )
            parts.append(f"{label} {kind}: {name.value}")
    return "; ".join(parts) or "none"


def is_ca(cert: x509.Certificate) -> bool:
    bc = _ext(cert, x509.BasicConstraints)
    return bool(bc is not None and bc.ca)


def certificate_rows(
    certs: Sequence[x509.Certificate], now: datetime | None = None, roles: Sequence[str] = ()
) -> list[list[object]]:
    rows: list[list[object]] = []
    for i, cert in enumerate(certs):
        role = roles[i] if i < len(roles) else ("CA" if is_ca(cert) else "leaf")
        left = time_left(cert.not_valid_after_utc, now)
        rows.append(
            [
                role,
                subject(cert),
                join(uri_sans(cert), ", ") or "-",
                key_type(cert.public_key()),
                f"{timestamp(cert.not_valid_before_utc)} → {timestamp(cert.not_valid_after_utc)}",
                badge(not left.startswith("expired"), left),
                name_constraints(cert) if is_ca(cert) else "-",
                tag("span", fingerprint(cert)[:23] + "…", title=fingerprint(cert)),
            ]
        )
    return rows


CERT_HEADERS = (
    "role",
    "subject",
    "SPIFFE ID / URI SAN",
    "key",
    "validity",
    "time left",
    "name constraints",
    "SHA-256",
)


def certificates(
    certs: Sequence[x509.Certificate], caption: str = "", roles: Sequence[str] = ()
) -> Html:
    return table(CERT_HEADERS, certificate_rows(certs, roles=roles), caption)


# -- identity values ---------------------------------------------------------------------


def spiffe_id(value: Any) -> Html:
    return tag("code", str(value), title=f"trust domain {value.trust_domain.name}")


def x509_svid(svid: Any) -> Html:
    roles = ["leaf"] + [f"intermediate {i}" for i in range(1, len(svid.cert_chain))]
    caption = f"X.509-SVID {svid.spiffe_id}" + (f" (hint {svid.hint})" if svid.hint else "")
    return certificates(svid.cert_chain, caption, roles)


def x509_bundle(bundle: Any, caption: str | None = None) -> Html:
    return certificates(
        bundle.x509_authorities,
        caption or f"X.509 bundle of {bundle.trust_domain.name}",
        ["authority"] * len(bundle.x509_authorities),
    )


def jwt_authorities(items: Iterable[tuple[str, object, int]], caption: str) -> Html:
    rows = [
        (kid, key_type(key), timestamp(exp) if exp else "-", time_left(exp) if exp else "-")
        for kid, key, exp in items
    ]
    return table(("key ID", "key", "expires", "time left"), rows, caption)


def spiffe_bundle(bundle: Any) -> Html:
    hint = bundle.refresh_hint
    facts = fields(
        [
            ("trust domain", bundle.trust_domain.name),
            ("X.509 authorities", len(bundle.x509_authorities)),
            ("JWT authorities", len(bundle.jwt_authorities)),
            ("refresh hint", "-" if hint is None else duration(hint.total_seconds())),
            ("sequence", "-" if bundle.sequence_number is None else bundle.sequence_number),
        ],
        f"SPIFFE bundle of {bundle.trust_domain.name}",
    )
    jwts = jwt_authorities(
        ((k, v, 0) for k, v in bundle.jwt_authorities.items()), "JWT authorities"
    )
    return join([facts, x509_bundle(bundle, "X.509 authorities"), jwts])


def jwt_bundle(bundle: Any) -> Html:
    return jwt_authorities(
        ((k, v, 0) for k, v in bundle.jwt_authorities.items()),
        f"JWT bundle of {bundle.trust_domain.name}",
    )


def server_bundle(bundle: Any, caption: str | None = None) -> Html:
    """A SPIRE Server API bundle (``spire_fabric.server.Bundle``)."""
    facts = fields(
        [
            ("trust domain", bundle.trust_domain.name),
            ("sequence", bundle.sequence_number),
            ("refresh hint", duration(bundle.refresh_hint) if bundle.refresh_hint else "-"),
            ("X.509 authorities", len(bundle.x509_authorities)),
            ("JWT authorities", len(bundle.jwt_authorities)),
        ],
        caption or f"bundle of {bundle.trust_domain.name}",
    )
    certs = [a.certificate for a in bundle.x509_authorities]
    roles = ["authority (tainted)" if a.tainted else "authority" for a in bundle.x509_authorities]
    jwts = jwt_authorities(
        ((a.key_id, a.public_key, a.expires_at) for a in bundle.jwt_authorities),
        "JWT authorities",
    )
    return join([facts, certificates(certs, "X.509 authorities", roles), jwts])


def bundle_set(bundles: Any) -> Html:
    parts: list[object] = [tag("b", f"bundle set: {len(bundles)} trust domains")]
    for bundle in bundles:
        parts.append(details(bundle.trust_domain.name, bundle._repr_html_(), open_=True))
    return join(parts)


def jwt_svid(svid: Any) -> Html:
    facts = fields(
        [
            ("SPIFFE ID", svid.spiffe_id),
            ("audience", ", ".join(svid.audience)),
            ("expires", timestamp(svid.expiry)),
            ("time left", time_left(svid.expiry)),
            ("hint", svid.hint or "-"),
        ],
        "JWT-SVID",
    )
    claims = table(("claim", "value"), sorted((k, repr(v)) for k, v in svid.claims.items()))
    return join([facts, details("claims", claims, open_=True)])


def bundle_diff(diff: Any) -> Html:
    rows: list[list[object]] = []
    for what, certs in (("added", diff.x509_added), ("removed", diff.x509_removed)):
        for cert in certs:
            rows.append(
                [badge(what == "added", what), "X.509", subject(cert), fingerprint(cert)[:23]]
            )
    for what, kids in (("added", diff.jwt_added), ("removed", diff.jwt_removed)):
        for kid in kids:
            rows.append([badge(what == "added", what), "JWT", kid, "-"])
    caption = f"bundle diff of {diff.trust_domain.name}: {diff.summary()}"
    return table(("change", "kind", "authority", "SHA-256"), rows, caption)


def chain_explanation(result: Any) -> Html:
    verdict = badge(result.ok, "verifies" if result.ok else "refused")
    head = tag("p", verdict, " ", result.summary)
    rows = []
    for step in result.steps:
        findings = join(
            (join([badge(f.ok, "✓" if f.ok else "✗"), " ", f.text]) for f in step.findings),
            Html("<br>"),
        )
        rows.append(
            [step.role, subject(step.certificate), name_constraints(step.certificate), findings]
        )
    steps = table(
        ("role", "subject", "name constraints", "findings"), rows, "the chain, leaf first"
    )
    reason = tag("p", "OpenSSL: ", tag("code", result.reason)) if result.reason else ""
    return join([head, steps, reason])


# -- SPIRE API values --------------------------------------------------------------------


def _selectors(selectors: Iterable[object]) -> Html:
    return join((tag("code", str(s)) for s in selectors), Html("<br>"))


ENTRY_HEADERS = (
    "SPIFFE ID",
    "parent",
    "selectors",
    "federates with",
    "DNS names",
    "X.509 TTL",
    "JWT TTL",
    "hint",
    "id",
)


def entry_row(e: Any) -> list[object]:
    return [
        tag("code", str(e.spiffe_id)),
        tag("code", str(e.parent_id)),
        _selectors(e.selectors),
        ", ".join(td.name for td in e.federates_with) or "-",
        ", ".join(e.dns_names) or "-",
        duration(e.x509_svid_ttl) if e.x509_svid_ttl else "default",
        duration(e.jwt_svid_ttl) if e.jwt_svid_ttl else "default",
        e.hint or "-",
        e.id or "-",
    ]


def entry_view(e: Any) -> Html:
    return table(ENTRY_HEADERS, [entry_row(e)], "registration entry")


# A notebook renders every row it is given: 50k entries made a 60 MB cell that froze the
# browser. The view shows the first rows and says how many there are in all.
HTML_ROWS_MAX = 200


def entries(items: Sequence[Any], caption: str = "", limit: int = HTML_ROWS_MAX) -> Html:
    shown = items[:limit]
    if not caption:
        caption = f"{len(items)} entries"
        if len(items) > limit:
            caption += f" (first {limit} shown; index or filter the list for the rest)"
    return table(ENTRY_HEADERS, [entry_row(e) for e in shown], caption)


AGENT_HEADERS = ("SPIFFE ID", "attestation", "SVID expires", "selectors", "banned", "can reattest")


def agent_row(a: Any) -> list[object]:
    return [
        tag("code", str(a.id)),
        a.attestation_type or "-",
        f"{timestamp(a.x509svid_expires_at)} ({time_left(a.x509svid_expires_at)})",
        _selectors(a.selectors),
        badge(not a.banned, "banned" if a.banned else "no"),
        "yes" if a.can_reattest else "no",
    ]


def agent_view(a: Any) -> Html:
    return table(AGENT_HEADERS, [agent_row(a)], "attested agent")


def agents(items: Sequence[Any], caption: str = "") -> Html:
    return table(AGENT_HEADERS, [agent_row(a) for a in items], caption or f"{len(items)} agents")


def federation_relationship(rel: Any) -> Html:
    profile = rel.profile
    endpoint_id = getattr(profile, "endpoint_spiffe_id", None)
    pairs: list[tuple[str, object]] = [
        ("trust domain", rel.trust_domain.name),
        ("bundle endpoint", rel.bundle_endpoint_url),
        ("profile", "https_spiffe" if endpoint_id is not None else "https_web"),
    ]
    if endpoint_id is not None:
        pairs.append(("endpoint SPIFFE ID", tag("code", str(endpoint_id))))
    bundle = rel.trust_domain_bundle
    if bundle is not None:
        pairs.append(("bundle sequence", bundle.sequence_number))
    caption = f"federation with {rel.trust_domain.name}"
    return join([fields(pairs, caption), server_bundle(bundle) if bundle is not None else ""])


def report(rep: Any) -> Html:
    rows = [(badge(c.ok, "✓" if c.ok else "✗"), c.title, c.detail, c.id) for c in rep.checks]
    passed = sum(1 for c in rep.checks if c.ok)
    caption = f"verify {rep.topology}: {passed} passed, {len(rep.checks) - passed} failed"
    return table(("", "check", "detail", "id"), rows, caption)


def mapping(values: Mapping[str, object], caption: str = "") -> Html:
    return fields(values.items(), caption)


# -- the topology's view, drawn by a layer above --------------------------------------------

# A topology's notebook view is a diagram, and drawing is ``render``'s job, a layer above
# ``topology`` (render imports topology). So Topology._repr_html_ cannot import its drawer;
# the package root, which sits above every layer and runs before any of them, hands the
# drawer in here (spire_fabric/__init__.py), and the topology asks here.
_topology_drawer: Callable[[Any], str] | None = None


def set_topology_drawer(draw: Callable[[Any], str]) -> None:
    """Make ``draw`` the topology's notebook view (the package root calls this once)."""
    global _topology_drawer
    _topology_drawer = draw


def topology_view(topology: Any) -> str | None:
    """The topology's notebook view; None (IPython then shows its text repr) if no drawer
    was handed in."""
    return None if _topology_drawer is None else _topology_drawer(topology)


# -- charts (dashboard) ------------------------------------------------------------------

CHART_COLOURS = ("#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989")


def line_chart(
    title: str, series: Mapping[str, Sequence[tuple[float, float]]], unit: str = ""
) -> Html:
    """A small inline SVG line chart, one line per series (no JavaScript, no CDN)."""
    w, h, left, top = 520, 180, 50, 24
    points = [p for values in series.values() for p in values]
    parts = [
        f'<text x="4" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{left}" y="{top + 40}" font-size="12">no samples yet</text>')
    else:
        t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
        vmax = max(p[1] for p in points) or 1.0
        span = (t1 - t0) or 1.0
        pw, ph = w - left - 10, h - top - 50
        parts.append(
            f'<text x="4" y="{top + 8}" font-size="10">{esc(f"{vmax:g} {unit}")}</text>'
            f'<text x="4" y="{top + ph}" font-size="10">0</text>'
            f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#d0d7de"/>'
        )
        for i, (name, values) in enumerate(sorted(series.items())):
            colour = CHART_COLOURS[i % len(CHART_COLOURS)]
            coords = " ".join(
                f"{left + (t - t0) / span * pw:.1f},{top + ph - v / vmax * ph:.1f}"
                for t, v in values
            )
            last = values[-1][1] if values else 0
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'
                f'<text x="{left + (i % 2) * 250}" y="{h - 30 + (i // 2) * 13}" font-size="10" '
                f'fill="{colour}">{esc(f"{name}: {last:g} {unit}")}</text>'
            )
    height = h + max(0, (len(series) - 4) // 2 * 13)
    return Html(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" '
        f'font-family="sans-serif" role="img" aria-label="{esc(title)}">{"".join(parts)}</svg>'
    )


# -- authorities report ------------------------------------------------------------------

_AUTHORITY_HEADERS = (
    "kind", "slot", "authority ID", "expires", "upstream", "in bundle", "tainted", "agents",
    "workload SVIDs",
)  # fmt: skip


def authorities(rep: Any) -> Html:
    """The authorities report: per server its authorities, upstream, agents, workloads
    and each federated peer's copy of its bundle."""
    parts: list[object] = [tag("b", f"authorities of {rep.deployment} ({rep.target})")]
    for s in rep.servers:
        title = f"{s.server} ({s.trust_domain})"
        if s.error:
            parts.append(fields([("error", badge(False, s.error))], title))
            continue
        rows = [
            (
                r.kind, r.slot, tag("code", r.authority_id),
                f"{timestamp(r.expires_at)} ({time_left(r.expires_at)})",
                tag("code", r.upstream_authority_subject_key_id or "-"),
                "yes" if r.in_bundle else "no",
                badge(False, "tainted") if r.tainted else "no",
                "-" if r.agents is None else r.agents, r.workload_svids,
            )
            for r in s.authorities
        ]  # fmt: skip
        parts.append(table(_AUTHORITY_HEADERS, rows, f"{title}, bundle sequence "
                                                       f"{s.bundle_sequence_number}"))
        if s.upstream:
            parts.append(table(
                ("upstream subject key ID", "signs", "expires", "in bundle", "tainted",
                 "root", "root expires", "root tainted"),
                [(tag("code", u.subject_key_id), ", ".join(u.signs),
                  timestamp(u.expires_at or None),
                  "yes" if u.in_bundle else "no (its root is)",
                  badge(False, "tainted") if u.tainted else "no",
                  tag("code", u.root_subject_key_id or "-"),
                  timestamp(u.root_expires_at or None),
                  badge(False, "tainted") if u.root_tainted else "no") for u in s.upstream],
                "upstream authority",
            ))  # fmt: skip
        if s.leaked_intermediate is not None:
            parts.append(fields([("if leaked", s.leaked_intermediate.text)], "leaked key"))
        parts.append(table(
            ("agent", "SPIFFE ID", "serial", "SVID expires", "authority", "detail"),
            [(a.agent or "-", tag("code", a.spiffe_id), a.serial_number,
              timestamp(a.expires_at), tag("code", a.authority_id or "-"), a.detail)
             for a in s.agents],
            f"{len(s.agents)} agents",
        ))  # fmt: skip
        parts.append(table(
            ("workload", "X.509 authority", "X.509-SVID expires", "JWT key", "detail"),
            [(w.workload, tag("code", w.x509_authority_id or "-"),
              timestamp(w.x509_expires_at or None), tag("code", w.jwt_key_id or "-"),
              w.detail) for w in s.workloads],
            f"{len(s.workloads)} workloads",
        ))  # fmt: skip
        if s.peers:
            parts.append(table(
                ("peer", "holds a copy", "equals the bundle", "sequence", "missing", "extra"),
                [(p.peer, "yes" if p.held else badge(False, "no"),
                  badge(p.equal, "yes" if p.equal else "no"), p.sequence_number,
                  ", ".join(p.missing) or "-", ", ".join(p.extra) or "-") for p in s.peers],
                "federated copies of this bundle",
            ))  # fmt: skip
    return join(parts)
