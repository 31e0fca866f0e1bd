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
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial

from cryptography import x509

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
from spire_fabric.server import AuthorityState, AuthorityStates
from spire_fabric.topology import DiskUpstreamAuthority, Server, Topology
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

    states = {n: _states(r) for n, r in runs.items()}
    intermediates = {s.name: _intermediate_id(store.generation(new_gen), s) for s in servers}
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
    d, name = run.d, run.server.name
    d.place_signing_ca(name, ca)
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
                f"{name} still signs with upstream {current.upstream_authority_subject_key_id} "
                f"after {attempts} prepares: it does not read the placed CA {signer}"
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
