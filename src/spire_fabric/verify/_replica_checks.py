"""Checks of a highly available server: every replica, each through its own API.

A Service in front of the replicas answers from whichever one it picks, so asking it
proves nothing about the others. These checks ask every replica itself
(:meth:`Deployment.replica_server`): that it is ready, that it serves the same bundle
as the others (they share one datastore), that its own X.509 authority (its own keys,
spiffe/spire#3582) chains to the upstream, that it counts the same entries, and that
exactly one controller manager leads (two would race on the entries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from spire_fabric.identity import BundleSet, X509Bundle, verify_x509_svid
from spire_fabric.runtime.deployment import Deployment, ServerReplica
from spire_fabric.topology import (
    DiskUpstreamAuthority,
    Server,
    controller_manager_enabled,
    server_replicas,
)
from spire_fabric.verify._report import CheckFailed

__all__ = ["replica_checks"]

Check = tuple[str, str, Callable[[], str]]


def replica_checks(d: Deployment) -> Iterator[Check]:
    """(id, title, body) of the HA checks of every server with more than one replica."""
    for s in d.topology.servers:
        n = server_replicas(s, d.target)
        if n <= 1:
            continue
        yield (f"replicas-ready:{s.name}", f"{s.name}: all {n} replicas ready",
               partial(_ready, d, s, n))  # fmt: skip
        yield (f"replicas-bundle:{s.name}", f"{s.name}: every replica serves the same bundle",
               partial(_same_bundle, d, s))  # fmt: skip
        yield (f"replicas-authority:{s.name}",
               f"{s.name}: each replica's own X.509 authority chains to the upstream",
               partial(_authorities, d, s))  # fmt: skip
        yield (f"replicas-entries:{s.name}",
               f"{s.name}: every replica counts the same entries through its own API",
               partial(_entries, d, s))  # fmt: skip
        if d.target == "kubernetes" and controller_manager_enabled(d.topology, s):
            yield (f"controller-manager-leader:{s.name}",
                   f"{s.name}: exactly one controller manager leads",
                   partial(_one_leader, d, s))  # fmt: skip


def _ready_replicas(d: Deployment, s: Server) -> list[ServerReplica]:
    ready = [r for r in d.server_replicas(s.name) if r.ready]
    if not ready:
        raise CheckFailed(f"no replica of {s.name} is ready")
    return ready


def _ready(d: Deployment, s: Server, want: int) -> str:
    replicas = d.server_replicas(s.name)
    ready = [r.name for r in replicas if r.ready]
    not_ready = [r.name for r in replicas if not r.ready]
    if len(ready) < want:
        raise CheckFailed(
            f"{len(ready)}/{want} replicas ready ({', '.join(ready) or 'none'})"
            + (f"; not ready: {', '.join(not_ready)}" if not_ready else "")
        )
    return f"{len(ready)}/{want} ready: {', '.join(ready)}"


def _bundle_of(d: Deployment, s: Server, replica: str) -> tuple[frozenset[bytes], frozenset[str]]:
    with d.replica_server(s.name, replica) as api:
        b = api.get_bundle(timeout=10)
    roots = frozenset(a.certificate.public_bytes(Encoding.DER) for a in b.x509_authorities)
    return roots, frozenset(a.key_id for a in b.jwt_authorities)


def _same_bundle(d: Deployment, s: Server) -> str:
    seen = {r.name: _bundle_of(d, s, r.name) for r in _ready_replicas(d, s)}
    first_name, first = next(iter(seen.items()))
    differ = [name for name, b in seen.items() if b != first]
    if differ:
        raise CheckFailed(
            f"{', '.join(differ)} serve(s) a bundle other than {first_name}'s: replicas of "
            "one server share a datastore, so they must agree"
        )
    roots, keys = first
    return f"{len(seen)} replicas: {len(roots)} X.509 root(s), {len(keys)} JWT key(s) each"


def _authorities(d: Deployment, s: Server) -> str:
    """Through each replica's own API: its active X.509 authority (must differ between
    replicas: servers never share keys) and an SVID it mints, verified against the trust
    domain's bundle alone; under a disk UpstreamAuthority the replica's CA must be signed
    by the topology's intermediate for that trust domain."""
    intermediate = None
    ua = s.upstream_authority
    if isinstance(ua, DiskUpstreamAuthority) and d.topology.ca is not None:
        intermediate = next(
            (i.common_name for i in d.topology.ca.intermediates if i.name == ua.ca), None
        )
    owners: dict[str, str] = {}
    signers: set[str] = set()
    for r in _ready_replicas(d, s):
        with d.replica_server(s.name, r.name) as api:
            active = api.get_authority_state("x509", timeout=10).active
            minted = api.mint_x509_svid(f"spiffe://{s.trust_domain.name}/spire-fabric/verify",
                                        ttl=60, timeout=10)  # fmt: skip
            roots = tuple(a.certificate for a in api.get_bundle(timeout=10).x509_authorities)
        if active is None:
            raise CheckFailed(f"replica {r.name} has no active X.509 authority")
        if active.authority_id in owners:
            raise CheckFailed(
                f"replicas {owners[active.authority_id]} and {r.name} sign with the same "
                f"authority {active.authority_id}: replicas must never share keys "
                "(spiffe/spire#3582)"
            )
        owners[active.authority_id] = r.name
        verify_x509_svid(minted.cert_chain, BundleSet([X509Bundle(s.trust_domain, roots)]))
        if intermediate is not None:
            issuers = [_common_name(c.issuer) for c in minted.cert_chain[1:]]
            if intermediate not in issuers:
                raise CheckFailed(
                    f"replica {r.name}'s chain ({' <- '.join(issuers) or 'no CA'}) does not "
                    f"pass through the intermediate {intermediate!r}"
                )
        signers.add(active.upstream_authority_subject_key_id or "self-signed")
    through = f", via {intermediate!r}" if intermediate else ""
    return (
        f"{len(owners)} distinct authorities, each verified against the bundle{through} "
        f"(upstream key(s): {', '.join(sorted(k[:16] for k in signers))})"
    )


def _common_name(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def _entries(d: Deployment, s: Server) -> str:
    counts: dict[str, int] = {}
    for r in _ready_replicas(d, s):
        with d.replica_server(s.name, r.name) as api:
            counts[r.name] = api.count_entries(timeout=10)
    if len(set(counts.values())) != 1:
        raise CheckFailed(
            "replicas disagree: " + ", ".join(f"{n} counts {c}" for n, c in counts.items())
        )
    return f"{next(iter(counts.values()))} entries on each of {len(counts)} replicas"


def _one_leader(d: Deployment, s: Server) -> str:
    replicas = d.server_replicas(s.name)
    leaders = [r.name for r in replicas if r.leader]
    if len(leaders) != 1:
        holder = "no replica" if not leaders else ", ".join(leaders)
        raise CheckFailed(
            f"{holder} holds the controller manager's leader Lease among "
            f"{', '.join(r.name for r in replicas) or 'no pods'}"
        )
    return f"{leaders[0]} leads; {len(replicas) - 1} standing by"
