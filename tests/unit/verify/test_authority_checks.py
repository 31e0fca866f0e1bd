"""verify's authority checks on constructed reports: each check green on a healthy report
and red, naming what is wrong and what to run, on a report with exactly that fault.

The reports are built by hand because the faults (an authority SPIRE failed to rotate, a
root about to expire, a peer's stale copy, an SVID still under a tainted key) cannot be
produced on demand by a real deployment in a unit test's time; the e2e enterprise test
runs the same checks against real SPIRE.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from spire_fabric.topology import Topology, preset
from spire_fabric.verify import (
    AgentSvidSource,
    AuthoritiesReport,
    AuthorityRow,
    PeerCopy,
    ServerAuthorities,
    UpstreamRow,
    WorkloadSvidSource,
    activation_window,
    authority_checks,
    preparation_window,
)

NOW = 1_800_000_000.0
HOUR = 3600

UP, DOWN = "spire-upstream-server", "spire-downstream-server"
ROOT = "00r00t"


@pytest.fixture(scope="module")
def enterprise() -> Topology:
    return preset("enterprise")


def _section(server: str, td: str, tag: str, workloads: dict[str, str],
             agents: dict[str, str], peer: str) -> ServerAuthorities:  # fmt: skip
    x509, jwt, inter = f"{tag}x509a", f"{tag}jwta", f"{tag}inter"
    return ServerAuthorities(
        server=server,
        trust_domain=td,
        bundle_sequence_number=3,
        authorities=(
            AuthorityRow(
                "x509",
                "active",
                x509,
                int(NOW + 20 * HOUR),
                inter,
                in_bundle=False,
                tainted=False,
                agents=len(agents),
                workload_svids=len(workloads),
            ),
            AuthorityRow(
                "jwt",
                "active",
                jwt,
                int(NOW + 20 * HOUR),
                "",
                in_bundle=True,
                tainted=False,
                agents=None,
                workload_svids=len(workloads),
            ),
        ),
        upstream=(
            UpstreamRow(
                inter,
                ("active",),
                False,
                False,
                expires_at=int(NOW + 365 * 24 * HOUR),
                root_subject_key_id=ROOT,
                root_expires_at=int(NOW + 3650 * 24 * HOUR),
            ),
        ),
        agents=tuple(
            AgentSvidSource(a, f"spiffe://{td}/agent/{a}", "1", int(NOW + HOUR), x509)
            for a in agents
        ),
        workloads=tuple(
            WorkloadSvidSource(w, f"spiffe://{td}/{w}", x509, int(NOW + HOUR), jwt)
            for w in workloads
        ),
        peers=(PeerCopy(peer, held=True, equal=True, sequence_number=3),),
    )


def _green() -> AuthoritiesReport:
    return AuthoritiesReport("enterprise", "local", (
        _section(UP, "enterprise-root.org", "u", {"upstream-client": ""},
                 {"upstream-agent": ""}, DOWN),
        _section(DOWN, "downstream.example.org", "d",
                 {"enterprise-api": "", "data-processor": "", "security-gateway": ""},
                 {"downstream-agent-1": "", "downstream-agent-2": "", "downstream-agent-3": ""},
                 UP),
    ))  # fmt: skip


def _with(report: AuthoritiesReport, server: str, **changes: object) -> AuthoritiesReport:
    servers = tuple(replace(s, **changes) if s.server == server else s for s in report.servers)  # type: ignore[arg-type]
    return replace(report, servers=servers)


def _checks(report: AuthoritiesReport, t: Topology) -> dict[str, tuple[bool, str]]:
    return {c.id: (c.ok, c.detail) for c in authority_checks(report, t, now=NOW)}


def _red(report: AuthoritiesReport, t: Topology) -> dict[str, str]:
    return {k: detail for k, (ok, detail) in _checks(report, t).items() if not ok}


def test_a_healthy_report_is_green_on_every_check_with_its_names(enterprise: Topology) -> None:
    checks = _checks(_green(), enterprise)
    assert set(checks) == {
        f"authority-{what}:{s}" for what in ("expiry", "svids", "tainted") for s in (UP, DOWN)
    } | {
        f"authority-copy:{UP}->downstream.example.org",
        f"authority-copy:{DOWN}->enterprise-root.org",
    }
    assert all(ok for ok, _ in checks.values()), checks
    titles = {c.id: c.title for c in authority_checks(_green(), enterprise, now=NOW)}
    assert titles[f"authority-copy:{DOWN}->enterprise-root.org"] == (
        "spire-downstream-server's copy of enterprise-root.org"
    )


def test_the_windows_are_spires_thresholds() -> None:
    assert activation_window(timedelta(hours=24)) == timedelta(hours=4)
    assert preparation_window(timedelta(hours=24)) == timedelta(hours=12)
    assert activation_window(timedelta(days=365)) == timedelta(days=7)
    assert preparation_window(timedelta(days=365)) == timedelta(days=30)


@pytest.mark.parametrize("kind", ["x509", "jwt"])
def test_an_active_authority_inside_its_activation_window_is_red(
    enterprise: Topology, kind: str
) -> None:
    # downstream's ca_ttl is 24h: SPIRE activates the next one with 4h left
    s = _green().server(DOWN)
    rows = tuple(replace(r, expires_at=int(NOW + 3 * HOUR)) if r.kind == kind else r
                 for r in s.authorities)  # fmt: skip
    red = _red(_with(_green(), DOWN, authorities=rows), enterprise)
    assert set(red) == {f"authority-expiry:{DOWN}"}
    assert "expires in 3.0h, inside its rotation window of 4.0h" in red[f"authority-expiry:{DOWN}"]
    assert f"deploy rotate {kind} --server {DOWN}" in red[f"authority-expiry:{DOWN}"]
    # just outside the window it is green
    rows = tuple(replace(r, expires_at=int(NOW + 5 * HOUR)) for r in s.authorities)
    assert not _red(_with(_green(), DOWN, authorities=rows), enterprise)


def test_a_server_without_an_active_authority_is_red(enterprise: Topology) -> None:
    s = _green().server(UP)
    rows = tuple(r for r in s.authorities if r.kind != "jwt")
    red = _red(_with(_green(), UP, authorities=rows), enterprise)
    assert "no active JWT authority" in red[f"authority-expiry:{UP}"]


def test_an_intermediate_or_root_expiring_within_ca_ttl_is_red(enterprise: Topology) -> None:
    s = _green().server(UP)  # upstream's ca_ttl is 48h
    near = (replace(s.upstream[0], expires_at=int(NOW + 40 * HOUR)),)
    red = _red(_with(_green(), UP, upstream=near), enterprise)
    assert "upstream authority uinter" in red[f"authority-expiry:{UP}"]
    assert "deploy rotate root --revoke" in red[f"authority-expiry:{UP}"]
    root_near = (replace(s.upstream[0], root_expires_at=int(NOW + 10 * HOUR)),)
    red = _red(_with(_green(), UP, upstream=root_near), enterprise)
    assert f"root {ROOT}" in red[f"authority-expiry:{UP}"]
    unseen = (replace(s.upstream[0], expires_at=0),)
    red = _red(_with(_green(), UP, upstream=unseen), enterprise)
    assert "cannot be told" in red[f"authority-expiry:{UP}"]


def test_an_svid_from_the_old_untainted_authority_is_green_and_named(enterprise: Topology) -> None:
    """The state of every workload for hours after SPIRE's own scheduled rotation: still
    trusted, so green, but said, with when it ends and how to end it now."""
    s = _green().server(DOWN)
    old = AuthorityRow("x509", "old", "dx509old", int(NOW + 5 * HOUR), "dinter",
                       in_bundle=False, tainted=False, agents=0, workload_svids=1)  # fmt: skip
    workloads = (
        replace(s.workloads[0], x509_authority_id="dx509old"),
        replace(s.workloads[1], x509_authority_id="dx509old", x509_expires_at=1_800_003_600),
        s.workloads[2],
    )
    checks = _checks(_with(_green(), DOWN, authorities=(*s.authorities, old),
                           workloads=workloads), enterprise)  # fmt: skip
    ok, detail = checks[f"authority-svids:{DOWN}"]
    assert ok, detail
    # one line for every workload in the same state, with the last expiry among them
    assert detail.startswith(
        "enterprise-api, data-processor: X.509-SVID from the old authority dx509old, still trusted"
    )
    assert "the last of these expires at 2027-01-15 09:00:00Z" in detail
    assert "security-gateway" not in detail
    assert "deploy rotate root --revoke" in detail  # under the intermediate: only the root


def test_an_svid_from_a_tainted_authority_is_red_naming_the_workload(enterprise: Topology) -> None:
    s = _green().server(DOWN)
    rows = tuple(replace(r, upstream_authority_subject_key_id="") for r in s.authorities)
    old = AuthorityRow("x509", "old", "dx509old", int(NOW + 5 * HOUR), "",
                       in_bundle=True, tainted=True, agents=0, workload_svids=1)  # fmt: skip
    workloads = (replace(s.workloads[0], x509_authority_id="dx509old"), *s.workloads[1:])
    red = _red(_with(_green(), DOWN, authorities=(*rows, old), workloads=workloads, upstream=()),
               enterprise)  # fmt: skip
    assert "enterprise-api: X.509-SVID from the old authority dx509old, which is tainted" in (
        red[f"authority-svids:{DOWN}"])
    assert f"run `deploy rotate x509 --server {DOWN}`" in red[f"authority-svids:{DOWN}"]
    # untainted, the same SVID is one SPIRE's own rotation leaves: green, with the way to hurry
    old = replace(old, tainted=False)
    checks = _checks(_with(_green(), DOWN, authorities=(*rows, old), workloads=workloads,
                           upstream=()), enterprise)  # fmt: skip
    ok, detail = checks[f"authority-svids:{DOWN}"]
    assert ok and f"`deploy rotate x509 --server {DOWN}`" in detail


def test_an_svid_that_could_not_be_observed_is_red_not_green(enterprise: Topology) -> None:
    s = _green().server(DOWN)
    blind = (replace(s.workloads[1], x509_authority_id="", detail="no X.509-SVID: timeout"),
             *s.workloads[2:], s.workloads[0])  # fmt: skip
    red = _red(_with(_green(), DOWN, workloads=blind), enterprise)
    assert (
        "data-processor: its SVIDs could not be observed (no X.509-SVID: timeout)"
        in (red[f"authority-svids:{DOWN}"])
    )


def test_a_jwt_svid_signed_by_an_unknown_key_is_red(enterprise: Topology) -> None:
    s = _green().server(UP)
    stray = (replace(s.workloads[0], jwt_key_id="elsewhere"),)
    red = _red(_with(_green(), UP, workloads=stray), enterprise)
    assert (
        "upstream-client: JWT-SVID from elsewhere, which is none of"
        in (red[f"authority-svids:{UP}"])
    )


def test_a_tainted_jwt_key_still_in_use_is_red_naming_the_workloads(enterprise: Topology) -> None:
    s = _green().server(DOWN)
    old = AuthorityRow("jwt", "old", "djwtold", int(NOW + 5 * HOUR), "", in_bundle=True,
                       tainted=True, agents=None, workload_svids=1)  # fmt: skip
    workloads = (s.workloads[0], replace(s.workloads[1], jwt_key_id="djwtold"), s.workloads[2])
    red = _red(_with(_green(), DOWN, authorities=(*s.authorities, old), workloads=workloads),
               enterprise)  # fmt: skip
    detail = red[f"authority-tainted:{DOWN}"]
    assert "JWT authority djwtold is tainted and still chained to by workload data-processor" in (
        detail
    )
    assert f"deploy rotate jwt --server {DOWN} --revoke" in detail
    # once the workload re-issued, the tainted key is green (nothing chains to it)
    red = _red(_with(_green(), DOWN, authorities=(*s.authorities, old)), enterprise)
    assert not red, red


def test_a_tainted_root_that_an_agent_still_chains_to_is_red(enterprise: Topology) -> None:
    s = _green().server(DOWN)
    old_x509 = AuthorityRow("x509", "old", "dx509old", int(NOW + 5 * HOUR), "dinterold",
                            in_bundle=False, tainted=False, agents=1, workload_svids=0)  # fmt: skip
    old_up = UpstreamRow("dinterold", ("old",), False, False, expires_at=int(NOW + 900 * HOUR),
                         root_subject_key_id="oldroot", root_expires_at=int(NOW + 900 * HOUR),
                         root_tainted=True)  # fmt: skip
    agents = (replace(s.agents[0], authority_id="dx509old"), *s.agents[1:])
    report = _with(_green(), DOWN, authorities=(*s.authorities, old_x509),
                   upstream=(*s.upstream, old_up), agents=agents)  # fmt: skip
    detail = _red(report, enterprise)[f"authority-tainted:{DOWN}"]
    assert "root oldroot is tainted and still chained to by agent downstream-agent-1" in detail
    assert "deploy rotate root --revoke" in detail


def test_a_tainted_authority_with_unobservable_agents_is_red_saying_why(
    enterprise: Topology,
) -> None:
    # Kubernetes: the agents' own SVIDs cannot be read, so no claim is made about them
    s = _green().server(DOWN)
    old_x509 = AuthorityRow("x509", "old", "dx509old", int(NOW + 5 * HOUR), "dinterold",
                            in_bundle=False, tainted=False, agents=0, workload_svids=0)  # fmt: skip
    old_up = UpstreamRow("dinterold", ("old",), False, False, expires_at=int(NOW + 900 * HOUR),
                         root_subject_key_id="oldroot", root_tainted=True)  # fmt: skip
    blind = tuple(replace(a, authority_id="", detail="the kubernetes target gives no SVID")
                  for a in s.agents)  # fmt: skip
    report = replace(_with(_green(), DOWN, authorities=(*s.authorities, old_x509),
                           upstream=(*s.upstream, old_up), agents=blind),
                     target="kubernetes")  # fmt: skip
    detail = _red(report, enterprise)[f"authority-tainted:{DOWN}"]
    assert "whether agents downstream-agent-1, downstream-agent-2, downstream-agent-3" in detail
    assert "kubernetes target does not show their SVIDs" in detail
    # without anything tainted the same blind agents claim nothing and are not needed
    assert f"authority-tainted:{DOWN}" not in _red(_with(_green(), DOWN, agents=blind), enterprise)


def test_a_peers_stale_copy_is_red_per_direction(enterprise: Topology) -> None:
    stale = (PeerCopy(DOWN, held=True, equal=False, sequence_number=2,
                      missing=("jwt:ujwtnew",), extra=("jwt:ujwtold",)),)  # fmt: skip
    red = _red(_with(_green(), UP, peers=stale), enterprise)
    assert set(red) == {f"authority-copy:{DOWN}->enterprise-root.org"}
    detail = red[f"authority-copy:{DOWN}->enterprise-root.org"]
    assert "lacks jwt:ujwtnew; still has jwt:ujwtold" in detail
    assert f"--server {UP}" in detail
    missing = (PeerCopy(DOWN, held=False, equal=False, sequence_number=0, detail="holds no copy"),)
    assert (
        "holds no copy"
        in _red(_with(_green(), UP, peers=missing), enterprise)[
            f"authority-copy:{DOWN}->enterprise-root.org"
        ]
    )


def test_a_server_that_could_not_be_asked_turns_its_checks_red(enterprise: Topology) -> None:
    down = ServerAuthorities(UP, "enterprise-root.org", error="connection refused")
    fields = ("authorities", "upstream", "agents", "workloads", "peers", "error")
    red = _red(_with(_green(), UP, **{k: getattr(down, k) for k in fields}), enterprise)
    assert set(red) == {
        f"authority-expiry:{UP}",
        f"authority-svids:{UP}",
        f"authority-tainted:{UP}",
        f"authority-copy:{DOWN}->enterprise-root.org",
    }
    assert all("connection refused" in d for d in red.values())


def test_a_nested_servers_upstream_is_judged_by_its_parents_rotation_window() -> None:
    # the child's upstream is the root server's own authority: 20 h left of 48 h is SPIRE's
    # normal rhythm (it activates the next at 8 h left), not a fault; 7 h left is
    nested = preset("nested")
    child = ServerAuthorities(
        "spire-child-server", "example.org",
        authorities=(
            AuthorityRow("x509", "active", "cx509", int(NOW + 20 * HOUR), "rootx509",
                         in_bundle=False, tainted=False, agents=1, workload_svids=0),
            AuthorityRow("jwt", "active", "cjwt", int(NOW + 20 * HOUR), "", in_bundle=True,
                         tainted=False, agents=None, workload_svids=0),
        ),
        upstream=(UpstreamRow("rootx509", ("active",), True, False,
                              expires_at=int(NOW + 20 * HOUR), root_subject_key_id="rootx509",
                              root_expires_at=int(NOW + 20 * HOUR)),),
    )  # fmt: skip
    report = AuthoritiesReport("nested", "local", (child,))
    assert _red(report, nested) == {}
    near = replace(child, upstream=(replace(child.upstream[0], expires_at=int(NOW + 7 * HOUR)),))
    red = _red(replace(report, servers=(near,)), nested)
    detail = red["authority-expiry:spire-child-server"]
    assert "inside spire-root-server's rotation window of 8.0h" in detail
    assert "deploy rotate x509 --server spire-root-server" in detail
