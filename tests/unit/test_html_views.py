"""Notebook views (`_repr_html_`), `Bundle.diff` and `explain_chain`.

The escaping tests are the point: every value a user, an entry or a certificate carries
reaches the HTML only through `spire_fabric._html.esc`.
"""

from __future__ import annotations

import datetime as dt
import html.parser
import subprocess
import sys
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from spire_fabric import _html
from spire_fabric.identity import (
    BundleError,
    BundleSet,
    JwtBundle,
    SpiffeBundle,
    SpiffeId,
    TrustDomain,
    X509Bundle,
    explain_chain,
    parse_insecure_jwt_svid,
)
from spire_fabric.render import HEALTH_COLOURS, render_topology_svg
from spire_fabric.runtime.ca_hierarchy import (
    CertificateAuthority,
    create_root_ca,
    issue_intermediate_ca,
)
from spire_fabric.server import (
    AgentList,
    AttestedAgent,
    Bundle,
    Entry,
    EntryList,
    FederationRelationship,
    HttpsSpiffeProfile,
    JwtAuthority,
    X509Authority,
)
from spire_fabric.testing.pki import make_ca, make_svid
from spire_fabric.topology import preset
from spire_fabric.verify import CheckResult, Report

UP = TrustDomain("enterprise-root.org")
DOWN = TrustDomain("downstream.example.org")
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


class _Tags(html.parser.HTMLParser):
    """Collects start tags, so a test can prove no <script> or <img> was produced."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(markup: str) -> _Tags:
    parser = _Tags()
    parser.feed(markup)
    return parser


def leaf(issuer: CertificateAuthority, spiffe_id: str, *, hours: float = 1) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=2))
        .not_valid_after(now + dt.timedelta(hours=hours))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
        .sign(issuer.private_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def hierarchy() -> tuple[CertificateAuthority, CertificateAuthority, CertificateAuthority]:
    root = create_root_ca()
    return root, issue_intermediate_ca(root, UP), issue_intermediate_ca(root, DOWN)


def both(root: CertificateAuthority) -> BundleSet:
    return BundleSet([X509Bundle(UP, (root.certificate,)), X509Bundle(DOWN, (root.certificate,))])


# -- escaping ------------------------------------------------------------------------------


def test_entry_with_html_in_hint_and_dns_names_renders_as_text() -> None:
    entry = Entry(
        SpiffeId.parse("spiffe://example.org/w"),
        SpiffeId.parse("spiffe://example.org/agent"),
        ("unix:uid:1000",),
        hint=HOSTILE,
        dns_names=(HOSTILE,),
    )
    for markup in (entry._repr_html_(), EntryList([entry])._repr_html_()):
        parsed = parse(markup)
        assert "script" not in parsed.tags and "img" not in parsed.tags
        assert HOSTILE in "".join(parsed.text)  # shown, as text


def test_tag_escapes_attribute_values_and_children() -> None:
    markup = _html.tag("span", HOSTILE, title=HOSTILE)
    assert "<script" not in markup and "<img" not in markup
    assert _html.esc(_html.Html("<b>x</b>")) == "<b>x</b>"  # built here: kept


def test_topology_svg_escapes_names_and_colours_by_health() -> None:
    topology = preset("enterprise")
    health = {"spire-upstream-server": True, "downstream-agent-1": False}
    svg = render_topology_svg(topology, health)
    assert svg.startswith("<svg")
    assert 'data-component="spire-upstream-server"' in svg
    start = svg.index('data-component="downstream-agent-1"')
    assert HEALTH_COLOURS[False] in svg[start : start + 300]


# -- views -----------------------------------------------------------------------------------


def test_svid_view_shows_chain_facts(hierarchy) -> None:
    svid = make_svid(make_ca("example.org"), "spiffe://example.org/w")
    markup = svid._repr_html_()
    assert "spiffe://example.org/w" in markup and "EC secp256r1" in markup
    assert _html.fingerprint(svid.leaf)[:23] in markup and "left" in markup
    assert repr(svid).startswith("X509Svid('spiffe://example.org/w', 1 certificates, expires ")


def test_ca_view_shows_its_name_constraint(hierarchy) -> None:
    root, up, _ = hierarchy
    markup = X509Bundle(UP, (up.certificate, root.certificate))._repr_html_()
    assert "permitted URI: enterprise-root.org" in markup


def test_bundle_views_show_sequence_hint_and_jwt_keys() -> None:
    ca = make_ca("example.org")
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    td = TrustDomain("example.org")
    spiffe = SpiffeBundle(
        td, (ca.cert,), {"kid-1": key}, refresh_hint=timedelta(minutes=5), sequence_number=7
    )
    markup = spiffe._repr_html_()
    assert "kid-1" in markup and "5m 0s" in markup and ">7<" in markup
    assert "kid-1" in JwtBundle(td, {"kid-1": key})._repr_html_()
    server = Bundle(td, (X509Authority(ca.cert),), (JwtAuthority("kid-2", key, 2**31),), 300, 9)
    assert "kid-2" in server._repr_html_() and ">9<" in server._repr_html_()
    assert "example.org" in BundleSet([spiffe])._repr_html_()


def test_jwt_svid_view_shows_claims_and_time_left() -> None:
    import base64
    import json

    def b64(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    exp = int(dt.datetime.now(dt.timezone.utc).timestamp()) + 600
    token = ".".join(
        [
            b64({"alg": "ES256", "typ": "JWT", "kid": "k"}),
            b64({"sub": "spiffe://example.org/w", "aud": ["api"], "exp": exp, "x": HOSTILE}),
            "c2ln",
        ]
    )
    markup = parse_insecure_jwt_svid(token, ["api"])._repr_html_()
    assert "spiffe://example.org/w" in markup and "left" in markup and "<script" not in markup


def test_agents_relationship_report_and_topology_views() -> None:
    agent = AttestedAgent(
        SpiffeId.parse("spiffe://example.org/spire/agent/join_token/t"), "join_token", "1", 2**31
    )
    assert "join_token" in AgentList([agent])._repr_html_() and "join_token" in agent._repr_html_()
    rel = FederationRelationship(
        UP,
        "https://127.0.0.1:31443",
        HttpsSpiffeProfile(SpiffeId.parse("spiffe://enterprise-root.org/spire/server")),
    )
    assert "https_spiffe" in rel._repr_html_()
    report = Report(
        "t", (CheckResult("a", "first", True, "fine"), CheckResult("b", "x", False, ""))
    )
    assert repr(report) == "Report('t': 1 passed, 1 failed)" and "1 failed" in report._repr_html_()
    topology = preset("enterprise")
    markup = topology._repr_html_()
    assert "<svg" in markup and "flowchart LR" in markup and "<details>" in markup
    assert repr(topology).startswith("Topology('enterprise': 2 trust domains")
    spiffe_id = SpiffeId.parse("spiffe://example.org/w")
    assert spiffe_id._repr_html_() == (
        '<code title="trust domain example.org">spiffe://example.org/w</code>'
    )


# -- bundle diff -----------------------------------------------------------------------------


def test_diff_names_authorities_added_and_removed() -> None:
    a, b = make_ca("example.org", "A"), make_ca("example.org", "B")
    td = TrustDomain("example.org")
    old, new = X509Bundle(td, (a.cert,)), X509Bundle(td, (a.cert, b.cert))
    diff = old.diff(new)
    assert diff.x509_added == (b.cert,) and diff.x509_removed == () and diff
    assert new.diff(old).x509_removed == (b.cert,)
    assert not old.diff(old)
    assert "1 X.509 added" in repr(diff) and "added" in diff._repr_html_()


def test_diff_across_bundle_types_and_jwt_keys() -> None:
    a = make_ca("example.org")
    td = TrustDomain("example.org")
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    old = Bundle(td, (X509Authority(a.cert),), (JwtAuthority("k1", key),), sequence_number=1)
    new = SpiffeBundle(td, (a.cert,), {"k2": key}, sequence_number=2)
    diff = old.diff(new)
    assert diff.jwt_added == ("k2",) and diff.jwt_removed == ("k1",)
    assert diff.sequence_number == (1, 2) and "sequence 1 → 2" in diff.summary()


def test_diff_of_two_trust_domains_is_refused() -> None:
    with pytest.raises(BundleError, match="different trust domains"):
        make_ca("a.org").bundle("a.org").diff(make_ca("b.org").bundle("b.org"))


# -- explain_chain ---------------------------------------------------------------------------


def test_good_chain_is_explained_to_the_root(hierarchy) -> None:
    root, _, down = hierarchy
    result = explain_chain(
        [leaf(down, "spiffe://downstream.example.org/w"), down.certificate], both(root)
    )
    assert result.ok and result.problems == []
    assert [s.role for s in result.steps] == ["leaf", "intermediate", "bundle authority"]
    assert "chains to CN=Enterprise Root CA" in result.summary
    texts = [f.text for s in result.steps for f in s.findings]
    assert any("permits URIs in downstream.example.org" in t and "inside" in t for t in texts)


def test_forged_chain_is_refused_naming_the_ca_and_its_constraint(hierarchy) -> None:
    root, up, _ = hierarchy
    forged = [leaf(up, "spiffe://downstream.example.org/w"), up.certificate]
    result = explain_chain(forged, both(root))
    assert not result.ok and "permitted subtree violation" in result.reason
    (bad,) = [s for s in result.steps if not s.ok]
    assert bad.certificate == up.certificate
    assert "permits URIs in enterprise-root.org" in result.summary and "OUTSIDE" in result.summary
    assert "refused" in result._repr_html_()


def test_expired_leaf_is_named(hierarchy) -> None:
    root, _, down = hierarchy
    chain = [leaf(down, "spiffe://downstream.example.org/w", hours=-1), down.certificate]
    result = explain_chain(chain, both(root))
    assert not result.ok and result.summary.startswith("expired at ")


def test_missing_bundle_and_unknown_issuer_are_named(hierarchy) -> None:
    root, _, down = hierarchy
    chain = [leaf(down, "spiffe://downstream.example.org/w"), down.certificate]
    result = explain_chain(chain, BundleSet([X509Bundle(UP, (root.certificate,))]))
    assert not result.ok and "no bundle for trust domain downstream.example.org" in result.problems
    other = make_ca("downstream.example.org")
    result = explain_chain(chain, BundleSet([X509Bundle(DOWN, (other.cert,))]))
    assert not result.ok
    assert any("no issuer in the chain or the bundle" in p for p in result.problems)


def test_svid_is_accepted_as_input() -> None:
    ca = make_ca("example.org")
    result = explain_chain(make_svid(ca, "spiffe://example.org/w"), ca.bundle("example.org"))
    assert result.ok and result.spiffe_id == SpiffeId.parse("spiffe://example.org/w")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_topology_view_is_drawn_by_render_without_anyone_importing_render_first() -> None:
    # topology cannot import render (render imports topology): the package root hands the
    # drawer in, and render is imported when a topology is first shown, not before
    shown = _python(
        "import sys\n"
        "from spire_fabric.topology import preset\n"
        "assert 'spire_fabric.render' not in sys.modules\n"
        "markup = preset('enterprise')._repr_html_()\n"
        "assert '<svg' in markup and 'flowchart LR' in markup, markup[:200]\n"
    )
    assert shown.returncode == 0, shown.stderr
    bare = _python("import sys, spire_fabric; print('spire_fabric.render' in sys.modules)")
    assert bare.stdout == "False\n", bare.stdout + bare.stderr


def test_authorities_report_renders_every_section_with_its_text_escaped() -> None:
    from spire_fabric.verify import (
        AgentSvidSource,
        AuthoritiesReport,
        AuthorityRow,
        PeerCopy,
        ServerAuthorities,
        UpstreamRow,
        WorkloadSvidSource,
    )

    section = ServerAuthorities(
        "spire-server", "example.org", 3,
        authorities=(AuthorityRow("x509", "old", "ab12", 0, "", True, True, 0, 1),),
        upstream=(UpstreamRow("cd34", ("active",), False, False, expires_at=1_800_000_000,
                              root_subject_key_id="ef56", root_tainted=True),),
        agents=(AgentSvidSource("a", "spiffe://example.org/agent", "7", 0, "", HOSTILE),),
        workloads=(WorkloadSvidSource("w", "spiffe://example.org/w", "ab12", 0, "kid", ""),),
        peers=(PeerCopy("peer", True, False, 2, missing=("jwt:kid",), extra=(HOSTILE,)),),
    )  # fmt: skip
    down = ServerAuthorities("other", "example.org", error=HOSTILE)
    parsed = parse(AuthoritiesReport("basic", "local", (section, down))._repr_html_())
    assert "script" not in parsed.tags and "img" not in parsed.tags
    text = "".join(parsed.text)
    assert text.count(HOSTILE) == 3  # the agent's detail, the peer's extra, the error
    for shown in ("ab12", "tainted", "cd34", "no (its root is)", "jwt:kid", "1 workloads",
                  "ef56", "2027-01-15 08:00:00 UTC"):
        assert shown in text, shown
