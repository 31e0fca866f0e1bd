"""Rotate one server's X.509 or JWT authority by hand, the way a key-compromise drill does.

Why each step waits for what it does: activating a key that an agent or a federated peer
does not hold yet hands out SVIDs they cannot verify; revoking a key that an SVID still
chains to breaks that SVID. So the order is SPIRE's own (LocalAuthority API):

1. prepare a new authority (it joins the bundle, it does not sign);
2. wait until every holder has it: each agent of the trust domain (its bundle, as its
   workloads get it from the Workload API), each federated peer (its copy, asked for
   with ``RefreshBundle`` first so nobody waits for the refresh hint) and each of the
   peer's agents that serves a workload federating with the trust domain (the copy as
   that workload gets it). On Kubernetes a spire-controller-manager owns the peer's
   federation relationship (a ClusterFederatedTrustDomain), but it never writes the
   bundle: it creates and updates the relationship's endpoint and profile only (its
   ``FederationRelationship.Equal`` ignores the bundle, and our resources carry no
   ``trustDomainBundle``), so the peer's copy is SPIRE's own refresh on every target;
3. activate it (it signs from now on);
4. taint the old one (agents renew every SVID it signed, at once);
5. wait until no agent SVID and no workload SVID chains to the old one (as
   :func:`~spire_fabric.verify.authorities_report` counts them);
6. with ``revoke``: revoke the old one and wait until it is gone from every holder.

Taint comes before the wait for renewals because only a taint makes agents renew before
half of each SVID's lifetime has passed. Every run starts from what SPIRE reports
(:func:`phase`), so a run that was interrupted resumes where it stopped, and a finished
rotation is not repeated: a new run starts a new one. A step that is unsafe (a holder
still lacks the new key, an SVID still chains to the old one) is refused with the reason
unless ``force``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Literal

from spire_fabric._wait import WaitTimeout, wait_until
from spire_fabric.errors import SpireFabricError
from spire_fabric.identity import TrustDomain
from spire_fabric.runtime.deployment import Deployment, StepReporter, no_report
from spire_fabric.server import AuthorityStates, Bundle, SpireServerClient
from spire_fabric.topology import (
    Server,
    SpireUpstreamAuthority,
    format_duration,
    server_replicas,
)
from spire_fabric.verify import authorities_report
from spire_fabric.verify._authorities import AgentSvidSource, skid

__all__ = ["Phase", "RotationRefused", "RotationResult", "RotationStep", "phase", "rotate"]

Kind = Literal["x509", "jwt"]
Phase = Literal["start", "prepared", "activated", "tainted", "renewed"]
_PHASE_ORDER: tuple[Phase, ...] = ("start", "prepared", "activated", "tainted", "renewed")
# holders read at the same time (as verify's IdentityReads: bounded, not one per agent)
_READERS = 8


class RotationRefused(SpireFabricError):
    """A step of the rotation is not safe (or not possible) now; the message says why."""


@dataclass(frozen=True)
class RotationStep:
    """One step as it went: ``done``, or ``skipped`` with why (already done, forced)."""

    name: str
    outcome: Literal["done", "skipped", "forced"]
    detail: str
    seconds: float


@dataclass(frozen=True)
class RotationResult:
    """What `rotate` did, step by step with timings (``rotate --output json``)."""

    server: str
    kind: Kind
    new_authority_id: str
    old_authority_id: str
    revoked: bool
    steps: tuple[RotationStep, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """The result as JSON, every step with its seconds."""
        import json

        return json.dumps(asdict(self), indent=2)


@dataclass
class _Run:
    d: Deployment
    server: Server
    kind: Kind
    force: bool
    timeout: float
    report: StepReporter
    steps: list[RotationStep] = field(default_factory=list)
    # one replica's own API (a server with replicas: each holds its own authorities);
    # None: the server's Service, whichever replica answers
    replica: str | None = None
    # each agent's SVID serial as the server reported it when this run tainted (None: this
    # run did not taint); what tells a renewed agent where its SVID cannot be read
    taint_serials: dict[str, str] | None = None

    def step(self, name: str, action: Callable[[], str]) -> None:
        start = time.monotonic()
        with self.report(name):
            detail = action()
        outcome: Literal["done", "forced"] = "forced" if detail.startswith("forced") else "done"
        self.steps.append(RotationStep(name, outcome, detail, time.monotonic() - start))

    def skip(self, name: str, why: str) -> None:
        with self.report(f"{name}: skipped, {why}"):  # shown in order, like the others
            pass
        self.steps.append(RotationStep(name, "skipped", why, 0.0))

    def api(self) -> SpireServerClient:
        if self.replica is not None:
            return self.d.replica_server(self.server.name, self.replica)
        return self.d.server(self.server.name)

    def wait(self, probe: Callable[[], str], what: str) -> str:
        """Wait until ``probe`` returns "" (nothing missing); refused with what is still
        missing after the timeout, unless forced."""
        try:
            wait_until(lambda: not probe(), self.timeout, what, interval=1.0)
        except WaitTimeout:
            missing = probe()
            if not missing:
                return what
            if not self.force:
                raise RotationRefused(f"{what}: not after {self.timeout:g} s: {missing} "
                                      "(--force goes on anyway)") from None  # fmt: skip
            return f"forced: {missing}"
        return what


def phase(states: AuthorityStates, bundle: Bundle, kind: Kind, still_signed: int) -> Phase:
    """Where a rotation of ``kind`` stands, from what SPIRE reports: a prepared authority
    (``prepared``), an old one not tainted (``activated``), an old one tainted that
    ``still_signed`` SVIDs chain to (``tainted``) or none do (``renewed``), else ``start``
    (no rotation under way, or the last one finished: its old authority revoked)."""
    if states.prepared is not None:
        return "prepared"
    old = states.old
    if old is None:
        return "start"
    held = _held(bundle, kind)
    if old.authority_id not in held:
        return "start"  # revoked (or, under an upstream authority, never in the bundle)
    if not held[old.authority_id]:
        return "activated"
    return "tainted" if still_signed else "renewed"


def _held(bundle: Bundle, kind: Kind) -> dict[str, bool]:
    if kind == "x509":
        return {skid(a.certificate): a.tainted for a in bundle.x509_authorities}
    return {a.key_id: a.tainted for a in bundle.jwt_authorities}


def rotate(
    deployment: Deployment,
    server: str,
    kind: Kind,
    *,
    revoke: bool = False,
    force: bool = False,
    timeout: float = 120.0,
    report: StepReporter = no_report,
) -> RotationResult:
    """Rotate ``server``'s ``kind`` authority (see the module for the steps), resuming a
    rotation under way. Raises :class:`RotationRefused` when a step is unsafe, before that
    step changes anything. An X.509 authority under an upstream authority is rotated but
    neither tainted nor revoked (SPIRE cannot: the bundle holds the upstream's root); with
    ``revoke`` the revoke step is skipped with what that means (``rotate root`` revokes)."""
    t = deployment.topology
    if kind not in ("x509", "jwt"):
        raise RotationRefused(f"kind must be x509 or jwt, got {kind!r}")
    names = [s.name for s in t.servers]
    if server not in names:
        raise RotationRefused(f"no server {server!r} in topology {t.name!r}; its servers: "
                              f"{', '.join(names)}")  # fmt: skip
    if server_replicas(t.server(server), deployment.target) > 1:
        return _rotate_replicas(deployment, t.server(server), kind, revoke=revoke, force=force,
                                timeout=timeout, report=report)  # fmt: skip
    run = _Run(deployment, t.server(server), kind, force, timeout, report)
    with run.api() as api:
        states = api.get_authority_state(kind, timeout=10)
        bundle = api.get_bundle(timeout=10)
    assert states.active is not None
    upstream = kind == "x509" and bool(states.active.upstream_authority_subject_key_id)
    now = phase(states, bundle, kind, _still_signed(run, states))
    if now == "renewed" and not revoke:
        now = "start"  # the last rotation is finished: this run starts a new one
    if upstream and now == "activated":
        now = "start"  # nothing to taint under an upstream authority: it was finished
    old_id = states.old.authority_id if states.old is not None else ""
    if now in ("start", "prepared"):
        old_id = states.active.authority_id  # it becomes the old one when the new signs
    new_id = states.prepared.authority_id if states.prepared is not None else (
        states.active.authority_id)  # fmt: skip
    at = _PHASE_ORDER.index(now)

    if now == "start":
        run.step("prepare", lambda: _prepare(run))
        new_id = run.steps[-1].detail.rsplit(" ", 1)[-1]
    else:
        run.skip("prepare", f"resumed: the rotation is {now}")
    if at <= _PHASE_ORDER.index("prepared"):
        run.step("wait for every holder", lambda: run.wait(
            lambda: _holders_missing(run, _ids(run)), f"every holder has {new_id}"))  # fmt: skip
        run.step("activate", lambda: _activate(run, new_id))
    else:
        run.skip("activate", f"{new_id} is active")
    if upstream:
        run.skip("taint", "under an upstream authority SPIRE taints the upstream one; "
                 "SVIDs of the old authority renew at half their lifetime")  # fmt: skip
    elif at <= _PHASE_ORDER.index("activated"):
        run.step("taint", lambda: _taint(run, old_id))
        run.step("wait for renewals", lambda: run.wait(
            lambda: _signed_by(run, old_id), f"nothing chains to {old_id}"))  # fmt: skip
    elif now == "tainted":
        run.skip("taint", f"{old_id} is tainted")
        run.step("wait for renewals", lambda: run.wait(
            lambda: _signed_by(run, old_id), f"nothing chains to {old_id}"))  # fmt: skip
    if revoke and upstream:
        upstream_id = states.active.upstream_authority_subject_key_id
        run.skip("revoke", _upstream_revoke_note(run, upstream_id))
        revoke = False
    if revoke:
        run.step("revoke", lambda: _revoke(run, old_id))
        run.step("wait until gone", lambda: run.wait(
            lambda: _holders_missing(run, _ids(run), gone=old_id),
            f"{old_id} is gone from every holder"))  # fmt: skip
    return RotationResult(server, kind, new_id, old_id, revoke, tuple(run.steps))


@dataclass
class _ReplicaRotation:
    """Where one replica's own rotation stands (from its own LocalAuthority API)."""

    run: _Run
    at: int
    old_id: str
    new_id: str
    upstream_id: str


def _replica_state(run: _Run, revoke: bool) -> _ReplicaRotation:
    """The same reading of SPIRE's state as :func:`rotate`, for one replica."""
    with run.api() as api:
        states = api.get_authority_state(run.kind, timeout=10)
        bundle = api.get_bundle(timeout=10)
    assert states.active is not None
    upstream_id = states.active.upstream_authority_subject_key_id if run.kind == "x509" else ""
    now = phase(states, bundle, run.kind, _still_signed(run, states))
    if (now == "renewed" and not revoke) or (upstream_id and now == "activated"):
        now = "start"
    old_id = states.old.authority_id if states.old is not None else ""
    if now in ("start", "prepared"):
        old_id = states.active.authority_id
    new_id = states.prepared.authority_id if states.prepared else states.active.authority_id
    return _ReplicaRotation(run, _PHASE_ORDER.index(now), old_id, new_id, upstream_id)


def _rotate_replicas(
    d: Deployment, server: Server, kind: Kind, *, revoke: bool, force: bool, timeout: float,
    report: StepReporter,
) -> RotationResult:  # fmt: skip
    """Every replica holds its own authorities, and each LocalAuthority call acts on the
    replica that takes it only: a taint sent through the Service reaches one replica, the
    others keep signing with their old key (spiffe/spire#5587). So each step is sent to
    every replica through its own API, and each wait covers all of them at once: one
    wait for every holder to have every replica's new key before any activates, one wait
    until nothing chains to any replica's old key before any is revoked."""
    names = [r.name for r in d.server_replicas(server.name)]
    ready = [r.name for r in d.server_replicas(server.name) if r.ready]
    if ready != names or not names:
        raise RotationRefused(
            f"{server.name}: every replica must be ready to rotate each one's authority; "
            f"ready: {', '.join(ready) or 'none'} of {', '.join(names) or 'none'}"
        )
    steps: list[RotationStep] = []
    lead = _Run(d, server, kind, force, timeout, report, steps)
    reps = [_replica_state(_Run(d, server, kind, force, timeout, report, steps, replica=n), revoke)
            for n in names]  # fmt: skip
    for r in reps:
        if r.at == 0:
            r.run.step(f"prepare on {r.run.replica}", partial(_prepare, r.run))
            r.new_id = steps[-1].detail.rsplit(" ", 1)[-1]
        else:
            r.run.skip(f"prepare on {r.run.replica}", f"resumed: {_PHASE_ORDER[r.at]}")
    activating = [r for r in reps if r.at <= _PHASE_ORDER.index("prepared")]
    if activating:
        new_ids = ", ".join(r.new_id for r in activating)
        lead.step("wait for every holder", lambda: lead.wait(
            lambda: _holders_missing(lead, _ids(lead)), f"every holder has {new_ids}"))  # fmt: skip
    for r in activating:
        r.run.step(f"activate on {r.run.replica}", partial(_activate, r.run, r.new_id))
    upstream = any(r.upstream_id for r in reps)
    olds = [r.old_id for r in reps if r.old_id]

    def still_signed() -> str:
        return "; ".join(m for m in (_signed_by(lead, o) for o in olds) if m)

    if upstream:
        lead.skip("taint", "under an upstream authority SPIRE taints the upstream one; "
                  "SVIDs of the old authorities renew at half their lifetime")  # fmt: skip
    else:
        tainting = [r for r in reps if r.at <= _PHASE_ORDER.index("activated")]
        if tainting:
            record_serials(lead)
        for r in tainting:
            r.run.step(f"taint on {r.run.replica}", partial(_taint_only, r.run, r.old_id))
        lead.step("wait for renewals", lambda: lead.wait(
            still_signed, f"nothing chains to {', '.join(olds)}"))  # fmt: skip
    if revoke and upstream:
        lead.skip("revoke", _upstream_revoke_note(lead, reps[0].upstream_id))
        revoke = False
    if revoke:
        for r in reps:
            r.run.step(f"revoke on {r.run.replica}", partial(_revoke, r.run, r.old_id))
        lead.step("wait until gone", lambda: lead.wait(
            lambda: "; ".join(m for m in (_holders_missing(lead, _ids(lead), gone=o)
                                          for o in olds) if m),
            f"{', '.join(olds)} gone from every holder"))  # fmt: skip
    return RotationResult(server.name, kind, ",".join(r.new_id for r in reps),
                          ",".join(r.old_id for r in reps), revoke, tuple(steps))  # fmt: skip


def _taint_only(run: _Run, old_id: str) -> str:
    """Taint through this run's API (the agents' serials were recorded once, before)."""
    with run.api() as api:
        api.taint_authority(old_id, run.kind, timeout=10)
    return f"{old_id} tainted"


def _upstream_revoke_note(run: _Run, upstream_id: str) -> str:
    """What ``--revoke`` can and cannot do for an X.509 authority that is an intermediate
    under an upstream authority (not an error: the rotation itself is done)."""
    ttl = run.server.default_x509_svid_ttl
    return (
        f"{run.server.name}'s X.509 authority is an intermediate under upstream authority "
        f"{upstream_id}; the bundle holds that upstream's root, not the intermediate, so "
        "SPIRE cannot taint or revoke it. The rotation re-issues SVIDs at half their "
        f"lifetime; an SVID the old intermediate signed stays valid until it expires (at most "
        f"{format_duration(ttl)}, the X.509-SVID TTL). To end that trust at once: "
        "`deploy rotate root --revoke`"
    )


def _prepare(run: _Run) -> str:
    with run.api() as api:
        prepared = api.prepare_authority(run.kind, timeout=10)
    return f"prepared {prepared.authority_id}"


def _activate(run: _Run, new_id: str) -> str:
    if run.kind == "jwt":
        # An agent drops the JWT-SVIDs it caches when it sees their key tainted, and only
        # then (it syncs every few seconds; a key revoked before it saw the taint is never
        # seen tainted, and what it cached stays served until it expires). A JWT-SVID for
        # the report's probe audience fetched now, signed by the key still active, is what
        # shows each agent did: "wait for renewals" waits until it comes back re-signed.
        _signed_by(run, "")
    with run.api() as api:
        api.activate_authority(new_id, run.kind, timeout=10)
    return f"{new_id} signs"


def _taint(run: _Run, old_id: str) -> str:
    record_serials(run)
    return _taint_only(run, old_id)


def _revoke(run: _Run, old_id: str) -> str:
    missing = _signed_by(run, old_id)
    if missing and not run.force:
        raise RotationRefused(f"not revoking {old_id}: {missing} (--force revokes anyway)")
    with run.api() as api:
        api.revoke_authority(old_id, run.kind, timeout=10)
    return f"forced: {missing}" if missing else f"{old_id} revoked"


def _ids(run: _Run) -> set[str]:
    """The authority IDs of the server's bundle now (the set every holder must have)."""
    with run.api() as api:
        return set(_held(api.get_bundle(timeout=10), run.kind))


def _still_signed(run: _Run, states: AuthorityStates) -> int:
    if states.old is None:
        return 0
    return 1 if _signed_by(run, states.old.authority_id) else 0


def _signed_by(run: _Run, authority_id: str) -> str:
    """What still chains to ``authority_id`` ("" for nothing), as the report counts."""
    section = authorities_report(run.d, [run.server.name]).server(run.server.name)
    if section.error:
        return f"{run.server.name} could not be asked: {section.error}"
    pending = []
    for a in section.agents if run.kind == "x509" else ():  # agents hold no JWT-SVID
        if a.authority_id == authority_id or "renewing" in a.detail:
            pending.append(f"agent {a.agent or a.spiffe_id}")
        elif a.agent and not a.authority_id and not renewed_since_taint(run, a):
            # an SVID the target cannot read (on Kubernetes the agent keeps it in its pod)
            # and no renewal seen since the taint: not known to be renewed
            pending.append(f"agent {a.agent} ({a.detail}; no new SVID since the taint)")
    for w in section.workloads:
        if w.detail:
            pending.append(f"workload {w.workload} ({w.detail})")
        elif authority_id in (w.x509_authority_id, w.jwt_key_id):
            pending.append(f"workload {w.workload}")
    return ", ".join(pending)


def record_serials(run: _Run) -> None:
    """Remember each agent's SVID serial as the server reports it (``ListAgents``), just
    before a taint."""
    with run.api() as api:
        run.taint_serials = {str(a.id): a.x509svid_serial_number
                             for a in api.list_agents(timeout=10)}  # fmt: skip


def renewed_since_taint(run: _Run, agent: AgentSvidSource) -> bool:
    """Whether the server reports a new SVID for ``agent`` since this run tainted: SPIRE
    signs every SVID with the active authority, which is the new one by then, and a taint
    makes agents whose SVID chains to the tainted authority renew at once. Without a taint
    in this run (resumed) there is nothing to compare with: not known."""
    if run.taint_serials is None:
        return False
    before = run.taint_serials.get(agent.spiffe_id)
    return before is None or before != agent.serial_number


def _holders_missing(run: _Run, wanted: set[str], gone: str = "") -> str:
    """Which holders of the trust domain's bundle lack one of ``wanted`` (or, with
    ``gone``, still hold it): each workload's agent, each federated peer."""
    td = run.server.trust_domain
    problems: list[str] = []
    for name, held in _workload_views(run.d, td, run.kind):
        if isinstance(held, str):
            problems.append(f"{name}: {held}")
        elif gone and gone in held:
            problems.append(f"{name} still holds {gone}")
        elif not gone and not wanted <= held:
            problems.append(f"{name} lacks {', '.join(sorted(wanted - held))}")
    for peer in dict.fromkeys(f.server for f in run.d.topology.federations if f.trust_domain == td):
        try:
            with run.d.server(peer) as api:
                api.refresh_bundle(td, timeout=10)
                copy = set(_held(api.get_federated_bundle(td, timeout=10), run.kind))
        except Exception as err:
            problems.append(f"peer {peer} could not be asked: {str(err).splitlines()[0]}")
            continue
        if gone and gone in copy:
            problems.append(f"peer {peer} still holds {gone}")
        elif not gone and not wanted <= copy:
            problems.append(f"peer {peer} lacks {', '.join(sorted(wanted - copy))}")
    return "; ".join(problems)


def _workload_views(
    d: Deployment, td: TrustDomain, kind: Kind
) -> list[tuple[str, set[str] | str]]:
    """Per agent that serves a workload ``td``'s bundle: the authority IDs of that bundle
    as its workload gets it (a str: why it could not be read). That is every agent of the
    trust domain, and every agent of a federated peer that serves a workload federating
    with ``td``: a peer server holding the new key is not enough, its workloads verify
    with the copy their agent syncs from it (every few seconds), so a key activated before
    that copy arrives fails cross-domain calls for those seconds.

    The agents are read at the same time: on Kubernetes each read is an exec into a pod,
    or a probe pod's start, a second to several each, and a rotation waits on these
    reads over and over; one poll then costs the slowest read, not the sum of them."""
    t = d.topology
    own = {s.name for s in t.servers_of(td)}
    nested = {s.name for s in t.servers if isinstance(s.upstream_authority, SpireUpstreamAuthority)}
    readers: dict[str, str] = {}  # "agent NAME" -> the workload read as
    for w in t.workloads:
        agent = t.agent(w.agent)
        holds = agent.server in own or td in w.federates_with
        if holds and w.name not in nested:
            readers.setdefault(f"agent {agent.name}", w.name)

    def read(workload: str) -> set[str] | str:
        try:
            if kind == "x509":
                bundle = d.x509_context(workload).bundles.get(td)
                return {skid(c) for c in bundle.x509_authorities} if bundle else set()
            jwt = d.jwt_bundles(workload).get(td)
            return set(jwt.jwt_authorities) if jwt else set()
        except Exception as err:
            return f"its Workload API did not answer: {err}"

    if not readers:
        return []
    with ThreadPoolExecutor(max_workers=min(_READERS, len(readers)),
                            thread_name_prefix="holder-read") as pool:  # fmt: skip
        views = list(pool.map(read, readers.values()))
    return list(zip(readers, views, strict=True))
