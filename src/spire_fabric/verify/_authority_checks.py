"""verify's authority checks: what a key-compromise drill (or SPIRE's own rotation) must
leave true, judged from one :class:`~spire_fabric.verify.AuthoritiesReport`.

Pure functions of the report and the topology, so they are proven with constructed reports
and run unchanged on every target. What a target cannot observe (on Kubernetes the agents'
own SVIDs) makes a check red with the reason wherever it matters, never green by default.

The rotation window is SPIRE 1.13.3's own (pkg/server/ca/manager/slot.go,
``preparationThreshold`` and ``keyActivationThreshold``): SPIRE prepares the next
authority when min(lifetime/2, 30 days) of the current one's lifetime is left and
activates it when min(lifetime/6, 7 days) is left, checking every 10 s. So an *active*
authority with less than its activation window left means SPIRE's rotation is stuck.
The lifetime is the server's ``ca_ttl`` (what SPIRE asks for; an upstream can only make
it shorter, which makes the window smaller, so this errs on the side of red).
An upstream (disk) authority bounds every CA minted under it: SPIRE caps a CA's NotAfter
at its upstream certificate's (pkg/common/x509svid/upstreamca.go), so an upstream or its
root with less than ``ca_ttl`` left means the next authority is cut short.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial

from spire_fabric.topology import Server, SpireUpstreamAuthority, Topology
from spire_fabric.verify._authorities import (
    AuthoritiesReport,
    AuthorityRow,
    ServerAuthorities,
    UpstreamRow,
    WorkloadSvidSource,
)
from spire_fabric.verify._report import CheckResult

__all__ = ["activation_window", "authority_checks", "preparation_window"]

_Verdict = tuple[list[str], str]
"""(what is wrong, one item each; what was seen when nothing is)."""
_Judge = Callable[[], _Verdict]

_30_DAYS = timedelta(days=30)
_7_DAYS = timedelta(days=7)


def preparation_window(ca_ttl: timedelta) -> timedelta:
    """How much of an authority's life is left when SPIRE 1.13.3 prepares the next one."""
    return min(ca_ttl / 2, _30_DAYS)


def activation_window(ca_ttl: timedelta) -> timedelta:
    """How much of an authority's life is left when SPIRE 1.13.3 activates the next one:
    an active authority inside it is one SPIRE failed to rotate."""
    return min(ca_ttl / 6, _7_DAYS)


def authority_checks(
    report: AuthoritiesReport, topology: Topology, *, now: float | None = None
) -> list[CheckResult]:
    """The authority checks of every server in ``report``, then one per federated copy
    (``"spire-downstream-server's copy of enterprise-root.org"``)."""
    at = time.time() if now is None else now
    results: list[CheckResult] = []
    for section in report.servers:
        server = topology.server(section.server)
        results += [
            _result(f"authority-expiry:{server.name}",
                    f"{server.name}: no active authority near its expiry",
                    section, partial(_expiry, section, server, topology, at)),
            _result(f"authority-svids:{server.name}",
                    f"{server.name}: SVIDs from untainted authorities of the bundle",
                    section, partial(_svids, section, server)),
            _result(f"authority-tainted:{server.name}",
                    f"{server.name}: nothing under a tainted authority",
                    section, partial(_tainted, section, server, report.target)),
        ]  # fmt: skip
    results += list(_copies(report, topology))
    return results


# ---- one check each ---------------------------------------------------------------------


def _result(check_id: str, title: str, section: ServerAuthorities, fn: _Judge) -> CheckResult:
    if section.error:
        return CheckResult(check_id, title, False, f"{section.server} could not be asked: "
                           f"{section.error}")  # fmt: skip
    problems, fine = fn()
    return CheckResult(check_id, title, not problems, "; ".join(problems) if problems else fine)


def _expiry(s: ServerAuthorities, server: Server, t: Topology, now: float) -> _Verdict:
    window = activation_window(server.ca_ttl)
    problems, fine = [], []
    for active, kind, label in ((s.authority("x509", "active"), "x509", "X.509"),
                                (s.authority("jwt", "active"), "jwt", "JWT")):  # fmt: skip
        if active is None:
            problems.append(f"no active {label} authority: run `deploy rotate {kind} "
                            f"--server {server.name}`")  # fmt: skip
            continue
        left = timedelta(seconds=active.expires_at - now)
        if left < window:
            problems.append(
                f"active {label} authority {active.authority_id} expires in {_span(left)}, "
                f"inside its rotation window of {_span(window)} (SPIRE 1.13.3 prepares the "
                f"next at min(ca_ttl/2, 30d) = {_span(preparation_window(server.ca_ttl))} "
                f"left and activates it at min(ca_ttl/6, 7d) = {_span(window)} left; it did "
                f"not): run `deploy rotate {kind} --server {server.name}`"
            )
        else:
            fine.append(f"{label} {active.authority_id[:12]}… {_span(left)} left")
    active_x509 = s.authority("x509", "active")
    for u in s.upstream:
        if "active" not in u.signs:
            continue  # the upstream of an old or prepared authority signs nothing new
        problems += _upstream_expiry(u, server, t, now, active_x509)
        if u.expires_at:
            fine.append(f"upstream {u.subject_key_id[:12]}… "
                        f"{_span(timedelta(seconds=u.expires_at - now))} left")  # fmt: skip
    return problems, f"window {_span(window)}; " + ", ".join(fine)


def _upstream_expiry(
    u: UpstreamRow, server: Server, t: Topology, now: float, active: AuthorityRow | None
) -> list[str]:
    fix = _upstream_fix(server)
    if not u.expires_at:
        return [f"upstream authority {u.subject_key_id} of the active X.509 authority was "
                "seen in no served chain and is not in the bundle: when it expires cannot "
                f"be told (is any workload of {server.name} served an SVID?)"]  # fmt: skip
    window, why = server.ca_ttl, f"within ca_ttl {_span(server.ca_ttl)}"
    ua = server.upstream_authority
    if isinstance(ua, SpireUpstreamAuthority):
        # nested: the upstream is the parent server's own authority, which SPIRE rotates;
        # a child CA cut short by it is SPIRE's normal rhythm, so only a parent authority
        # that SPIRE failed to rotate (inside the parent's activation window) is red
        window = activation_window(t.server(ua.server).ca_ttl)
        why = f"inside {ua.server}'s rotation window of {_span(window)}"
    problems = []
    for what, key_id, expires in (
        ("upstream authority", u.subject_key_id, u.expires_at),
        ("root", u.root_subject_key_id, u.root_expires_at),
    ):
        if what == "root" and (not key_id or key_id == u.subject_key_id):
            continue
        left = timedelta(seconds=expires - now)
        if expires and left < window:
            problems.append(
                f"{what} {key_id} (above active X.509 authority "
                f"{active.authority_id if active else '?'}) expires in {_span(left)}, "
                f"{why}: SPIRE caps every CA it mints under it at its "
                f"NotAfter, so the next authority is cut short and SVIDs stop at {what}'s "
                f"expiry: run `{fix}`"
            )
    return problems


def _upstream_fix(server: Server) -> str:
    ua = server.upstream_authority
    if isinstance(ua, SpireUpstreamAuthority):
        return f"deploy rotate x509 --server {ua.server}"
    return "deploy rotate root --revoke"


def _svids(s: ServerAuthorities, server: Server) -> _Verdict:
    """Red for an SVID from a tainted authority, under a tainted root, or from a key that is
    none of the server's (revoked, or another server's), and for one that was not seen.

    An SVID from the *old*, untainted authority is green, named: that is every workload for
    hours after SPIRE's own scheduled rotation (agents renew at half an SVID's lifetime), and
    it is still trusted; a verify that went red after every routine rotation would teach
    people to ignore it. A compromise is what taint (here or on the root) is for.

    The same holds for a server of several replicas after one is gone (a pod lost): each
    replica held its own keys (with the memory key manager they die with it), so what it
    signed comes from no live replica, yet is trusted until it expires. Such a JWT-SVID is
    green while its key is in the bundle and untainted, such an X.509-SVID while its chain
    verifies to a bundle root and nothing on it is tainted (`_gone_replica`). A server of one
    replica is judged as before: its one server holds every authority it signs with."""
    if not s.workloads:
        return [], "no workload is served by this server's agents"
    slot_of: dict[tuple[str, str], AuthorityRow] = {(r.kind, r.authority_id): r
                                                    for r in s.authorities}  # fmt: skip
    tainted_roots = {u.subject_key_id: u.root_subject_key_id for u in s.upstream if u.root_tainted}
    unseen = []
    reasons: dict[str, list[str]] = {}  # what is wrong -> the workloads it is wrong for
    renewing: dict[str, list[str]] = {}  # what is renewing -> the workloads (green)
    last_expiry: dict[str, int] = {}
    for w in s.workloads:
        if w.detail or not w.x509_authority_id or not w.jwt_key_id:
            unseen.append(f"{w.workload}: its SVIDs could not be observed "
                          f"({w.detail or 'no authority key ID'})")  # fmt: skip
            continue
        for kind, label, aid in (("x509", "X.509-SVID", w.x509_authority_id),
                                 ("jwt", "JWT-SVID", w.jwt_key_id)):  # fmt: skip
            row = slot_of.get((kind, aid))
            if row is None and s.replicas > 1:
                why, note = _gone_replica(s, server, kind, aid, w)
                if not why:
                    if kind == "x509":
                        last_expiry[note] = max(last_expiry.get(note, 0), w.x509_expires_at)
                    renewing.setdefault(note, []).append(w.workload)
                    continue
            elif row is None:
                why = f"{label} from {aid}, which is none of {server.name}'s authorities"
            elif row.tainted:
                why = (f"{label} from the {row.slot} authority {aid}, which is tainted: run "
                       f"`deploy rotate {kind} --server {server.name}` (it resumes from what "
                       "SPIRE reports and waits for the re-issue)")  # fmt: skip
            elif kind == "x509" and row.upstream_authority_subject_key_id in tainted_roots:
                root = tainted_roots[row.upstream_authority_subject_key_id]
                why = (f"X.509-SVID under root {root}, which is tainted: run `deploy rotate "
                       "root --revoke`")  # fmt: skip
            elif row.slot != "active":
                # SPIRE 1.13.3 refuses to taint a local X.509 authority under an upstream
                # one (api/localauthority/v1/service.go): only a root rotation hurries it
                hurry = (f"`{_upstream_fix(server)}`" if row.upstream_authority_subject_key_id
                         else f"`deploy rotate {kind} --server {server.name}`")  # fmt: skip
                until = " (the last of these expires at {last})" if kind == "x509" else ""
                note = (f"{label} from the {row.slot} authority {aid}, still trusted, renewed "
                        f"at half its lifetime{until}; to cut them off now: {hurry}")  # fmt: skip
                if kind == "x509":
                    last_expiry[note] = max(last_expiry.get(note, 0), w.x509_expires_at)
                renewing.setdefault(note, []).append(w.workload)
                continue
            else:
                continue
            reasons.setdefault(why, []).append(w.workload)
    problems = unseen + [f"{', '.join(names)}: {why}" for why, names in reasons.items()]
    n = len(s.workloads)
    fine = f"{n} workload{'s' if n != 1 else ''}: X.509- and JWT-SVIDs from active ones"
    if renewing:
        fine = "; ".join(
            f"{', '.join(names)}: " + note.replace("{last}", _when(last_expiry.get(note, 0)))
            for note, names in renewing.items()
        )
    return problems, fine


def _gone_replica(
    s: ServerAuthorities, server: Server, kind: str, aid: str, w: WorkloadSvidSource
) -> tuple[str, str]:
    """(what is wrong, "" if nothing; the green note) for an SVID of a server of several
    replicas from an authority that no live replica holds.

    Trusted, hence green and named, only by what a verifier trusts: the JWT key still in
    the bundle and untainted; the X.509 chain verified (in the report) to a bundle root with
    nothing tainted on it. A key the bundle no longer holds was revoked (or is another
    server's) and stays red."""
    held = {(b.kind, b.authority_id): b for b in s.bundle_authorities}
    whose = f"which no live replica of {server.name} holds (its replica is gone)"
    if kind == "jwt":
        key = held.get(("jwt", aid))
        if key is None:
            return (f"JWT-SVID from {aid}, which is none of {server.name}'s authorities: no "
                    "live replica holds it and the bundle does not (revoked, or another "
                    "server's)"), ""  # fmt: skip
        if key.tainted:
            return (f"JWT-SVID from {aid}, {whose}, and which is tainted in the bundle: "
                    "agents re-issue as soon as they see a taint, so one still served means "
                    "they did not"), ""  # fmt: skip
        until = _when(key.expires_at) if key.expires_at else "it is removed (no expiry)"
        return "", (f"JWT-SVID from {aid}, from a replica that is gone (its key is still in "
                    f"the bundle until {until}; renewed at half its lifetime)")  # fmt: skip
    if not w.x509_chain:
        return (f"X.509-SVID from {aid}, which is none of {server.name}'s authorities: no "
                "live replica holds it and its chain does not verify against the bundle",
                "")  # fmt: skip
    tainted = [k for k in w.x509_chain if (b := held.get(("x509", k))) is not None and b.tainted]
    if tainted:
        return (f"X.509-SVID from {aid}, {whose}, under root {tainted[0]}, which is tainted: "
                "run `deploy rotate root --revoke`"), ""  # fmt: skip
    return "", (f"X.509-SVID from CA {aid}, from a replica that is gone (its chain verifies "
                f"to root {w.x509_chain[-1]} of the bundle; the last of these expires at "
                "{last}; renewed at half its lifetime)")  # fmt: skip


def _tainted(s: ServerAuthorities, server: Server, target: str) -> _Verdict:
    # every tainted thing in the bundle, and which X.509 authority IDs chain to it
    tainted: list[tuple[str, str, set[str], str]] = []  # (what, id, x509 ids under it, fix)
    for r in s.authorities:
        if r.tainted:
            fix = f"deploy rotate {r.kind} --server {server.name} --revoke"
            tainted.append((f"{'X.509' if r.kind == 'x509' else 'JWT'} authority",
                            r.authority_id, {r.authority_id} if r.kind == "x509" else set(),
                            fix))  # fmt: skip
    for u in s.upstream:
        if u.root_tainted:
            under = {r.authority_id for r in s.authorities if r.kind == "x509"
                     and r.upstream_authority_subject_key_id == u.subject_key_id}  # fmt: skip
            what = "upstream authority" if u.in_bundle else "root"
            tainted.append((what, u.root_subject_key_id, under, "deploy rotate root --revoke"))
    if not tainted:
        return [], "no tainted authority in the bundle"
    problems = []
    for what, key_id, under, fix in tainted:
        users = [f"workload {w.workload}" for w in s.workloads
                 if w.x509_authority_id in under or w.jwt_key_id == key_id]  # fmt: skip
        if under:
            users += [f"agent {a.agent or a.spiffe_id}" for a in s.agents
                      if a.authority_id in under]  # fmt: skip
            unknown = [a.agent or a.spiffe_id for a in s.agents if not a.authority_id]
        else:
            unknown = []
        if users:
            problems.append(f"{what} {key_id} is tainted and still chained to by "
                            f"{', '.join(users)}: agents re-issue as soon as they see a taint, "
                            f"so check them; `{fix}` waits for it and then "
                            "revokes")  # fmt: skip
        elif unknown:
            problems.append(f"{what} {key_id} is tainted and whether agents "
                            f"{', '.join(unknown)} still chain to it cannot be told (the "
                            f"{target} target does not show their SVIDs): `{fix}` removes "
                            "it once no SVID seen chains to it")  # fmt: skip
    if problems:
        return problems, ""
    return [], "tainted, and nothing seen chains to it: " + ", ".join(
        f"{what} {key_id[:12]}…" for what, key_id, _, _ in tainted
    )


def _copies(report: AuthoritiesReport, t: Topology) -> Iterator[CheckResult]:
    """Per direction: each federated peer's copy of a trust domain equals the bundle of
    that trust domain's server (X.509 authorities and JWT keys alike)."""
    sections = {s.trust_domain: s for s in report.servers}
    for fed in t.federations:
        td = fed.trust_domain.name
        check_id = f"authority-copy:{fed.server}->{td}"
        title = f"{fed.server}'s copy of {td}"
        owner = sections.get(td)
        if owner is None:
            continue  # not in this report (`authorities --server` chose others)
        if owner.error:
            yield CheckResult(check_id, title, False,
                              f"{owner.server} could not be asked: {owner.error}")  # fmt: skip
            continue
        copy = next((p for p in owner.peers if p.peer == fed.server), None)
        if copy is None:
            yield CheckResult(check_id, title, False, f"{fed.server} was not asked for its copy")
        elif copy.equal:
            yield CheckResult(check_id, title, True, f"equals {owner.server}'s bundle "
                              f"(sequence {owner.bundle_sequence_number})")  # fmt: skip
        else:
            why = copy.difference
            yield CheckResult(
                check_id, title, False,
                f"differs from {owner.server}'s bundle: {why}. {fed.server} refreshes it from "
                f"the bundle endpoint within the refresh hint; a rotation under way waits "
                f"for it: `deploy rotate x509|jwt --server {owner.server}` resumes it",
            )  # fmt: skip


# ---- small helpers ----------------------------------------------------------------------

def _when(unix: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(unix))


def _span(d: timedelta) -> str:
    seconds = d.total_seconds()
    if seconds <= 0:
        return "0s (expired)"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.0f}m"
