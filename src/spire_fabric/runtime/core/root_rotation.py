"""Rotate the offline Enterprise Root CA and every trust domain's intermediate: the drill
that really revokes X.509 trust (``deploy rotate root [--revoke]``).

Why a root rotation at all: both trust domains' bundles hold the Enterprise Root, and
SPIRE's X.509 authorities are signed by a per-trust-domain intermediate under it. Rotating
a SPIRE authority (``rotate x509``) re-issues every SVID, but an SVID minted by a leaked
key still chains to the unchanged root until it expires. Only a new root, with the old one
gone from every bundle, ends that.

What SPIRE 1.13.3 offers, read in its source (pkg/server/api/localauthority/v1,
pkg/server/ca/manager, plugin upstreamauthority/disk):

- the disk UpstreamAuthority rereads its certificate, key and bundle files on every mint
  of an X.509 authority, and publishes the bundle file's certificates as upstream roots,
  which SPIRE *appends* to its bundle (``SyncX509Roots``); the Bundle API's
  ``AppendBundle`` adds a root the same way. Nothing removes a root but a revoke;
- ``upstreamauthority taint|revoke`` accept only the subject key ID of the CA that signed
  the *old* X.509 authority directly, and only if that CA is itself in the bundle. Under
  our hierarchy that CA is the intermediate, which the bundle does not hold: naming the
  intermediate fails ("no ca found"), naming the root is refused ("upstream authority
  didn't sign the old local authority").

So the steps, each waiting on what SPIRE and every holder report:

1. a new generation in the CA store (new root, new name-constrained intermediates);
2. the new root appended to every server's bundle (``AppendBundle``), and a wait until
   every agent (its workloads' bundle) and every federated peer holds it, before anything
   is signed under it; then, if asked, a grace for external clients, which trust what
   ``deploy trust-anchor`` prints (old and new root from step 1 on) and re-read it on their
   own schedule;
3. per server, a *bridge*: the old root itself is placed as its signing CA, then prepare and
   activate. The old authority is then one the old root signed directly, which is what
   ``upstreamauthority taint`` can name. It lasts seconds; its cost is that the old root's
   key is handed to the server for that long (on Kubernetes through the Secret), which is
   acceptable only because that root is being retired;
4. the new generation becomes current; per server its new intermediate is placed, then
   prepare (again until SPIRE reports the new intermediate as the upstream authority: on
   Kubernetes the kubelet refreshes the Secret volume late) and activate;
5. the old root tainted on every server (agents renew everything under it at once), then a
   wait until every agent and workload SVID chains to the active authority;
6. with ``revoke``: the old root revoked on every server, a wait until it is gone from every
   holder, and the old generation's keys deleted.

Every run starts from what SPIRE and the CA store report, so an interrupted run resumes.

A topology where a server has replicas takes steps 3-6 another way (the section "servers
with replicas" below): the bridge on one replica, the switch on every replica, the others
restarted before the taint, the taint and the revoke through the bridged replica.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial

from cryptography import x509

from spire_fabric.identity import X509Bundle, X509SvidError, verify_x509_svid
from spire_fabric.runtime.core.ca import CaStore, SigningCa
from spire_fabric.runtime.core.rotation import (
    RotationRefused,
    RotationStep,
    _holders_missing,
    _Run,
    record_serials,
    renewed_since_taint,
)
from spire_fabric.runtime.deployment import Deployment, StepReporter, no_report
from spire_fabric.server import AuthorityState, AuthorityStates, InvalidArgumentError, NotFoundError
from spire_fabric.topology import DiskUpstreamAuthority, Server, Topology, server_replicas
from spire_fabric.verify import authorities_report
from spire_fabric.verify._authorities import skid

__all__ = ["RootRotationResult", "rotate_root"]

_PLACE_TIMEOUT_FLOOR = 150.0  # the kubelet's Secret refresh: sync period + cache TTL


@dataclass(frozen=True)
class RootRotationResult:
    """What `rotate_root` did, step by step with timings (``rotate root --output json``)."""

    old_root: str
    new_root: str
    generation: int
    revoked: bool
    steps: tuple[RotationStep, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """The result as JSON, every step with its seconds."""
        import json

        return json.dumps(asdict(self), indent=2)


@dataclass
class _Roots:
    store: CaStore
    old_gen: int
    new_gen: int
    old: x509.Certificate
    new: x509.Certificate

    @property
    def old_id(self) -> str:
        return skid(self.old)

    @property
    def new_id(self) -> str:
        return skid(self.new)


def rotate_root(
    deployment: Deployment,
    *,
    revoke: bool = False,
    force: bool = False,
    timeout: float = 120.0,
    external_grace: float = 0.0,
    report: StepReporter = no_report,
) -> RootRotationResult:
    """Rotate the topology's Enterprise Root CA and intermediates (see the module),
    resuming a rotation under way. Raises :class:`RotationRefused` when the topology has
    no such hierarchy, or a step is unsafe, before that step changes anything.

    ``external_grace``: seconds to wait, once every SPIFFE holder has the new root and
    before anything is signed under it, for clients outside SPIFFE (they trust what
    ``deploy trust-anchor`` prints, which no one can observe) to re-read their anchor."""
    d = deployment
    t = d.topology
    servers = _servers(d)
    replicated = [s for s in servers if server_replicas(s, d.target) > 1]
    _refuse_unready_replicas(d, replicated)  # before anything changes
    runs = {s.name: _Run(d, s, "x509", force, timeout, report) for s in servers}
    first = next(iter(runs.values()))
    store = CaStore(d.ca_directory)
    gens = store.generations()
    steps = first.steps
    for run in runs.values():
        run.steps = steps  # one list of steps, whichever server a step is about

    under_way = gens.next is not None or (
        gens.previous is not None and _root_held(runs, _root_of(store.generation(gens.previous), t))
    )  # fmt: skip
    if not under_way:
        if gens.previous is not None:
            store.retire()  # its root is gone everywhere: the last rotation was revoked
        first.step("new generation", lambda: f"generation {store.begin_generation(t)} made")
        gens = store.generations()
    else:
        first.skip("new generation", "resumed: a root rotation is under way")
    old_gen = gens.current if gens.next is not None else gens.previous
    new_gen = gens.next if gens.next is not None else gens.current
    assert old_gen is not None and new_gen is not None
    roots = _Roots(store, old_gen, new_gen, _root_of(store.generation(old_gen), t),
                   _root_of(store.generation(new_gen), t))  # fmt: skip

    # 2. the new root into every bundle, and every holder has it
    first.step("introduce new root", lambda: _introduce(runs, roots))
    first.step(
        "wait for every holder",
        lambda: first.wait(
            lambda: _all_missing(runs, {roots.new_id}), f"every holder has root {roots.new_id}"
        ),
    )

    if external_grace > 0 and store.generations().next is not None:
        first.step("external grace", lambda: _grace(external_grace))

    intermediates = {s.name: _intermediate_id(store.generation(new_gen), s) for s in servers}
    if replicated:
        _with_replicas(d, servers, runs, roots, intermediates, revoke=revoke)
        return RootRotationResult(roots.old_id, roots.new_id, new_gen, revoke, tuple(steps))
    states = {n: _states(r) for n, r in runs.items()}
    # 3. the bridge: an authority signed by the old root itself, so it can be tainted
    for s in servers:
        active = states[s.name].active
        on = active.upstream_authority_subject_key_id if active else ""
        if on in (roots.old_id, intermediates[s.name]):
            runs[s.name].skip(f"bridge {s.name}", f"its authority is signed by {on}")
            continue
        bridge = store.generation(old_gen).root_as_signing_ca(t)
        runs[s.name].step(f"bridge {s.name}", partial(_switch, runs[s.name], bridge, roots.old_id))
    # 4. the new chain current, then placed and used by every server
    if store.generations().next is not None:
        first.step("promote generation", lambda: _promote(store, t, new_gen))
    for s in servers:
        active = _states(runs[s.name]).active
        if active is not None and active.upstream_authority_subject_key_id == intermediates[s.name]:
            runs[s.name].skip(f"switch {s.name}", f"signed by {intermediates[s.name]}")
            continue
        signing = store.signing_ca(t, s)
        assert signing is not None
        switch = partial(_switch, runs[s.name], signing, intermediates[s.name])
        runs[s.name].step(f"switch {s.name}", switch)

    # 5. the old root tainted; everything re-issued under the new chain
    if _tainted_everywhere(runs, roots):
        first.skip("taint old root", f"{roots.old_id} is tainted (or gone) everywhere")
    else:
        first.step("taint old root", lambda: _taint(runs, roots))
    first.step(
        "wait for renewals",
        lambda: first.wait(
            lambda: _not_on_active(runs), "every SVID chains to the new intermediates"
        ),
    )
    # 6. revoke
    if revoke:
        first.step("revoke old root", lambda: _revoke(runs, roots, force))
        first.step("wait until gone", lambda: first.wait(
            lambda: _all_missing(runs, set(), gone=roots.old_id),
            f"root {roots.old_id} is gone from every holder"))  # fmt: skip
        first.step("retire old generation", lambda: _retire(store, old_gen))
    return RootRotationResult(roots.old_id, roots.new_id, new_gen, revoke, tuple(steps))


# ---- what the topology must be ------------------------------------------------------------


def _servers(d: Deployment) -> list[Server]:
    t = d.topology
    if t.ca is None:
        raise RotationRefused(
            f"topology {t.name!r} has no CA hierarchy (no Enterprise Root CA to rotate); "
            "rotate x509 rotates a self-signed server's CA"
        )
    inters = {i.name for i in t.ca.intermediates}
    servers: list[Server] = []
    for s in t.servers:
        ua = s.upstream_authority
        if isinstance(ua, DiskUpstreamAuthority) and ua.ca in inters:
            if ua.cert_file or ua.key_file or ua.bundle_file:
                raise RotationRefused(f"{s.name} reads CA files you supplied "
                                      f"({ua.cert_file or ua.key_file or ua.bundle_file}): "
                                      "rotating them is yours to do")  # fmt: skip
            servers.append(s)
        elif ua is not None:
            raise RotationRefused(f"{s.name} gets its CA another way ({type(ua).__name__}); "
                                  "rotate root handles servers under the installer's "
                                  "Enterprise Root only")  # fmt: skip
    if not servers:
        raise RotationRefused(f"no server of topology {t.name!r} signs under its Enterprise Root")
    return servers


def _root_of(store: CaStore, t: Topology) -> x509.Certificate:
    root = store.root(t)
    if root is None:
        raise RotationRefused(f"no Enterprise Root CA in {store.directory} (was `up` run?)")
    return root.certificate


def _intermediate_id(store: CaStore, s: Server) -> str:
    assert isinstance(s.upstream_authority, DiskUpstreamAuthority)
    pem = store.files(s.upstream_authority.ca).cert_path.read_bytes()
    return skid(x509.load_pem_x509_certificates(pem)[0])


# ---- steps ----------------------------------------------------------------------------------


def _states(run: _Run) -> AuthorityStates:
    with run.api() as api:
        return api.get_authority_state("x509", timeout=10)


def _introduce(runs: dict[str, _Run], roots: _Roots) -> str:
    added = []
    for name, run in runs.items():
        if roots.new_id not in _bundle_roots(run):
            with run.api() as api:
                api.append_bundle(x509_authorities=[roots.new], timeout=10)
            added.append(name)
    return f"root {roots.new_id} appended to {', '.join(added)}" if added else (
        f"root {roots.new_id} already in every bundle")  # fmt: skip


def _all_missing(runs: dict[str, _Run], wanted: set[str], gone: str = "") -> str:
    return "; ".join(p for run in runs.values() if (p := _holders_missing(run, wanted, gone)))


def _switch(run: _Run, ca: SigningCa, signer: str) -> str:
    """Place ``ca``, prepare until the prepared authority is signed by ``signer`` (the
    server rereads its files only when it mints, and on Kubernetes sees a new Secret
    late), then activate it."""
    run.d.place_signing_ca(run.server.name, ca)
    return _use_placed(run, signer)


def _use_placed(run: _Run, signer: str) -> str:
    """Prepare (through ``run``'s API) until the prepared authority is signed by
    ``signer``, the CA already placed, then activate it."""
    name = run.server.name
    deadline = time.monotonic() + max(run.timeout, _PLACE_TIMEOUT_FLOOR)
    prepared: AuthorityState | None = None
    attempts = 0
    while True:
        with run.api() as api:
            states = api.get_authority_state("x509", timeout=10)
            current = states.prepared
            if current is None or current.upstream_authority_subject_key_id != signer:
                current = api.prepare_authority("x509", timeout=30)
                attempts += 1
        if current.upstream_authority_subject_key_id == signer:
            prepared = current
            break
        if time.monotonic() > deadline:
            raise RotationRefused(
                f"{run.replica or name} still signs with upstream "
                f"{current.upstream_authority_subject_key_id} after {attempts} prepares: "
                f"it does not read the placed CA {signer}"
            )
        time.sleep(3.0)
    with run.api() as api:
        api.activate_authority(prepared.authority_id, "x509", timeout=10)
    return f"{prepared.authority_id} (signed by {signer}) signs, after {attempts} prepare(s)"


def _grace(seconds: float) -> str:
    time.sleep(seconds)
    return f"{seconds:g} s for external clients to re-read trust-anchor (old and new root)"


def _promote(store: CaStore, t: Topology, gen: int) -> str:
    store.promote(t)
    return f"generation {gen} is current"


def _bundle_roots(run: _Run) -> dict[str, bool]:
    """The X.509 authorities of the server's bundle: subject key ID -> tainted."""
    with run.api() as api:
        bundle = api.get_bundle(timeout=10)
    return {skid(a.certificate): a.tainted for a in bundle.x509_authorities}


def _tainted_everywhere(runs: dict[str, _Run], roots: _Roots) -> bool:
    """No server holds the old root untainted (tainted or gone everywhere)."""
    return all(_bundle_roots(run).get(roots.old_id) is not False for run in runs.values())


def _root_held(runs: dict[str, _Run], root: x509.Certificate) -> bool:
    """Whether some server's bundle still holds ``root``."""
    return any(skid(root) in _bundle_roots(run) for run in runs.values())


def _taint(runs: dict[str, _Run], roots: _Roots) -> str:
    done = []
    for name, run in runs.items():
        if _bundle_roots(run).get(roots.old_id) is False:
            record_serials(run)
            with run.api() as api:
                api.taint_upstream_authority(roots.old_id, timeout=10)
            done.append(name)
    return f"root {roots.old_id} tainted on {', '.join(done) or 'no server (already)'}"


def _not_on_active(runs: dict[str, _Run]) -> str:
    """What does not chain to its server's active authority yet ("" for nothing)."""
    pending: list[str] = []
    for name, run in runs.items():
        section = authorities_report(run.d, [name]).server(name)
        if section.error:
            pending.append(f"{name} could not be asked: {section.error}")
            continue
        active = section.authority("x509", "active")
        aid = active.authority_id if active else ""
        for a in section.agents:
            if "renewing" in a.detail or (a.authority_id and a.authority_id != aid):
                pending.append(f"agent {a.agent or a.spiffe_id}")
            elif a.agent and not a.authority_id and not renewed_since_taint(run, a):
                # its SVID cannot be read here (Kubernetes), and no renewal since the taint
                pending.append(f"agent {a.agent} ({a.detail}; no new SVID since the taint)")
        for w in section.workloads:
            if w.detail or w.x509_authority_id != aid:
                pending.append(f"workload {w.workload}" + (f" ({w.detail})" if w.detail else ""))
    return ", ".join(pending)


def _revoke(runs: dict[str, _Run], roots: _Roots, force: bool) -> str:
    missing = _not_on_active(runs)
    if missing and not force:
        raise RotationRefused(f"not revoking root {roots.old_id}: still under it: {missing} "
                              "(--force revokes anyway)")  # fmt: skip
    done = []
    for name, run in runs.items():
        if roots.old_id in _bundle_roots(run):
            with run.api() as api:
                api.revoke_upstream_authority(roots.old_id, timeout=10)
            done.append(name)
    text = f"root {roots.old_id} revoked on {', '.join(done) or 'no server (already)'}"
    return f"forced: {missing}; {text}" if missing else text


def _retire(store: CaStore, gen: int) -> str:
    store.retire()
    return f"generation {gen}'s keys deleted"


# ---- servers with replicas --------------------------------------------------------------
#
# Each replica holds its own X.509 authority, and every LocalAuthority call acts on the
# replica that takes it (SPIRE 1.13.3, pkg/server/api/localauthority/v1/service.go):
#
# - ``TaintX509UpstreamAuthority`` and ``RevokeX509UpstreamAuthority`` accept only the
#   upstream of the *taking* replica's old authority, then change the bundle, which all
#   replicas share in the datastore. The taint then notifies that replica only: its CA
#   manager and its own server SVID rotator (which re-signs the SVID it serves its APIs
#   with). A second taint fails "root CA is already tainted" (sqlstore taintX509CA), so no
#   other replica can be told (spiffe/spire#5587). So the bridge is needed on one replica,
#   the *taker*, which takes the taint and the revoke; every replica needs the switch.
# - a replica that mints an X.509 authority (a prepare, or the start of a replica with
#   memory keys) syncs the bundle with the roots its disk UpstreamAuthority publishes
#   (``SyncX509Roots``, pkg/server/ca/manager/manager.go), and *revokes* every tainted root
#   not among them. A replica restarted after the taint would revoke the old root at once,
#   before the agents renewed. So the other replicas are rolled after the switch and
#   before the taint: each restarts one at a time, mints its server SVID under its
#   authority of the new chain (memory keys: a new authority under the placed CA), and
#   serves nothing under the old root by the time it is revoked.


@dataclass
class _Group:
    """One server's members in the rotation: its replicas, each through its own API (a
    server of one replica: its Service), and the taker of the taint and the revoke."""

    server: Server
    members: list[_Run]
    taker: _Run
    replicated: bool


def _label(run: _Run) -> str:
    return run.replica or run.server.name


def _refuse_unready_replicas(d: Deployment, replicated: list[Server]) -> None:
    """Every replica there and ready, or refused naming the others: a replica that is not
    ready cannot be switched, and one that starts later mints under whatever CA is placed
    then (after the taint: it revokes the old root, see above)."""
    problems = []
    for s in replicated:
        found = d.server_replicas(s.name)
        want = server_replicas(s, d.target)
        not_ready = [r.name for r in found if not r.ready]
        if not_ready:
            problems.append(f"{s.name}: not ready: {', '.join(not_ready)}")
        if len(found) != want:
            problems.append(f"{s.name}: {len(found)} replica(s) found of {want}")
    if problems:
        raise RotationRefused("rotate root needs every replica ready: " + "; ".join(problems))


def _signed_old_root(states: AuthorityStates, roots: _Roots, inter: str) -> bool:
    """Whether this replica can take the upstream taint and revoke: its authority is the
    bridge (signed by the old root), or it has switched and the bridge is its old one."""
    active = states.active.upstream_authority_subject_key_id if states.active else ""
    old = states.old.upstream_authority_subject_key_id if states.old else ""
    return active == roots.old_id or (active == inter and old == roots.old_id)


def _groups(d: Deployment, servers: list[Server], runs: dict[str, _Run], roots: _Roots,
            intermediates: dict[str, str]) -> list[_Group]:  # fmt: skip
    groups = []
    for s in servers:
        one = runs[s.name]
        replicated = server_replicas(s, d.target) > 1
        members = [_Run(d, s, "x509", one.force, one.timeout, one.report, one.steps, replica=r.name)
                   for r in d.server_replicas(s.name)] if replicated else [one]  # fmt: skip
        bridged = [m for m in members if _signed_old_root(_states(m), roots, intermediates[s.name])]
        taker = bridged[0] if bridged else members[0]
        groups.append(_Group(s, members, taker, replicated))
    return groups


def _with_replicas(d: Deployment, servers: list[Server], runs: dict[str, _Run], roots: _Roots,
                   intermediates: dict[str, str], *, revoke: bool) -> None:  # fmt: skip
    """Steps 3-6 of the module for a topology where a server has replicas (see above):
    the bridge on each server's taker, the switch on every replica, the roll of the
    others, the taint and the revoke through the taker; resumed from SPIRE's state."""
    store, t = roots.store, d.topology
    first = next(iter(runs.values()))
    groups = _groups(d, servers, runs, roots, intermediates)
    takers = {g.server.name: g.taker for g in groups}
    # 3. the bridge, on the taker only
    for g in groups:
        name, inter = g.server.name, intermediates[g.server.name]
        if _signed_old_root(_states(g.taker), roots, inter):
            g.taker.skip(f"bridge {_label(g.taker)}", f"its authority is, or was, signed by "
                         f"{roots.old_id}")  # fmt: skip
            continue
        held = _bundle_roots(g.taker).get(roots.old_id)  # False: untainted, None: gone
        if held is None or (held and not revoke):
            g.taker.skip(f"bridge {_label(g.taker)}", f"root {roots.old_id} is "
                         f"{'gone' if held is None else 'tainted'}: nothing to take")  # fmt: skip
            continue
        if held:
            raise RotationRefused(
                f"{name}: root {roots.old_id} is tainted and no replica holds an authority "
                "it signed: SPIRE takes the upstream revoke only from such a replica"
            )
        bridge = store.generation(roots.old_gen).root_as_signing_ca(t)
        g.taker.step(f"bridge {_label(g.taker)}",
                     partial(_switch, g.taker, bridge, roots.old_id))  # fmt: skip
    # 4. the new chain current, placed once per server, used by every replica
    if store.generations().next is not None:
        first.step("promote generation", lambda: _promote(store, t, roots.new_gen))
    for g in groups:
        inter, placed = intermediates[g.server.name], False
        for m in g.members:
            active = _states(m).active
            if active is not None and active.upstream_authority_subject_key_id == inter:
                m.skip(f"switch {_label(m)}", f"signed by {inter}")
                continue
            if not placed:
                signing = store.signing_ca(t, g.server)
                assert signing is not None
                m.step(f"switch {_label(m)}", partial(_switch, m, signing, inter))
                placed = True
            else:
                m.step(f"switch {_label(m)}", partial(_use_placed, m, inter))
    # 4b. the other replicas rolled, before the taint (see above)
    for g in groups:
        for m in g.members if g.replicated else ():
            if m is g.taker:
                continue
            if not _served_pending(m, roots):
                m.skip(f"roll {_label(m)}", f"serves an SVID under root {roots.new_id}")
                continue
            m.step(f"roll {_label(m)}", partial(_roll, m, roots))
    # 5. the old root tainted through each taker; everything re-issued under the new chain
    if _tainted_everywhere(takers, roots):
        first.skip("taint old root", f"{roots.old_id} is tainted (or gone) everywhere")
    else:
        first.step("taint old root", lambda: _taint_through(takers, roots))
    first.step("wait for renewals", lambda: first.wait(
        lambda: _not_under(groups, intermediates, roots),
        "every SVID and every replica's own SVID chains to the new intermediates"))  # fmt: skip
    # 6. revoke, through each taker
    if revoke:
        first.step("revoke old root", lambda: _revoke_through(groups, intermediates, roots))
        first.step("wait until gone", lambda: first.wait(
            lambda: _all_missing(takers, set(), gone=roots.old_id),
            f"root {roots.old_id} is gone from every holder"))  # fmt: skip
        first.step("retire old generation", lambda: _retire(store, roots.old_gen))


def _served_pending(run: _Run, roots: _Roots) -> str:
    """Nothing ("") when the SVID the replica serves its APIs with chains to the new root
    (verified against it alone); else why not."""
    assert run.replica is not None
    chain = run.d.replica_server_svid(run.server.name, run.replica)
    try:
        verify_x509_svid(chain, X509Bundle(run.server.trust_domain, (roots.new,)))
    except X509SvidError as err:
        return f"replica {run.replica} serves an SVID not under root {roots.new_id} ({err})"
    return ""


def _roll(run: _Run, roots: _Roots) -> str:
    """Restart one replica (it comes back ready), so it serves an SVID under the new root.
    The signing CA is placed again first: what a restarted replica mints under (memory
    keys) must be the new intermediate, whatever an interrupted run left placed."""
    assert run.replica is not None
    signing = CaStore(run.d.ca_directory).signing_ca(run.d.topology, run.server)
    assert signing is not None
    run.d.place_signing_ca(run.server.name, signing)
    run.d.restart_replica(run.server.name, run.replica)
    what = f"{run.replica} restarted, serves an SVID under root {roots.new_id}"
    return run.wait(lambda: _served_pending(run, roots), what)


def _taint_through(takers: dict[str, _Run], roots: _Roots) -> str:
    done = []
    for name, run in takers.items():
        if _bundle_roots(run).get(roots.old_id) is False:
            record_serials(run)
            try:
                with run.api() as api:
                    api.taint_upstream_authority(roots.old_id, timeout=10)
            except InvalidArgumentError as err:
                if "already tainted" not in err.message:
                    raise  # a replica's cache lagged: the shared bundle has it tainted
            done.append(f"{name} (through {_label(run)})")
    return f"root {roots.old_id} tainted on {', '.join(done) or 'no server (already)'}"


def _not_under(groups: list[_Group], intermediates: dict[str, str], roots: _Roots) -> str:
    """What does not chain to an authority of its server under the new intermediate yet
    ("" for nothing): agent and workload SVIDs (any replica may have signed them), and the
    SVID each replica serves its APIs with (chains to the new root)."""
    pending: list[str] = []
    for g in groups:
        name, inter = g.server.name, intermediates[g.server.name]
        section = authorities_report(g.taker.d, [name]).server(name)
        if section.error:
            pending.append(f"{name} could not be asked: {section.error}")
            continue
        good = {r.authority_id for r in section.authorities
                if r.kind == "x509" and r.upstream_authority_subject_key_id == inter}  # fmt: skip
        for a in section.agents:
            if "renewing" in a.detail or (a.authority_id and a.authority_id not in good):
                pending.append(f"agent {a.agent or a.spiffe_id}")
            elif a.agent and not a.authority_id and not renewed_since_taint(g.taker, a):
                pending.append(f"agent {a.agent} ({a.detail}; no new SVID since the taint)")
        for w in section.workloads:
            if w.detail or w.x509_authority_id not in good:
                pending.append(f"workload {w.workload}" + (f" ({w.detail})" if w.detail else ""))
        for m in g.members if g.replicated else ():
            if problem := _served_pending(m, roots):
                pending.append(problem)
    return ", ".join(pending)


def _revoke_through(groups: list[_Group], intermediates: dict[str, str], roots: _Roots) -> str:
    first = groups[0].taker
    missing = _not_under(groups, intermediates, roots)
    if missing and not first.force:
        raise RotationRefused(f"not revoking root {roots.old_id}: still under it: {missing} "
                              "(--force revokes anyway)")  # fmt: skip
    done = []
    for g in groups:
        if roots.old_id in _bundle_roots(g.taker):
            try:
                with g.taker.api() as api:
                    api.revoke_upstream_authority(roots.old_id, timeout=10)
            except NotFoundError:
                pass  # a replica's cache lagged: the shared bundle has it revoked
            done.append(f"{g.server.name} (through {_label(g.taker)})")
    text = f"root {roots.old_id} revoked on {', '.join(done) or 'no server (already)'}"
    return f"forced: {missing}; {text}" if missing else text
