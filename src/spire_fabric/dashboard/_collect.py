"""One read of a running deployment, through the `Deployment` interface, the SPIRE Server
API, the agents' Workload API and SPIRE's telemetry: what every dashboard page shows.

Read-only by construction: only list/get/fetch calls are made. Every call has a short
timeout so a dead component costs one refresh a couple of seconds, not the client's
default 30 s, and its failure is recorded (shown red) instead of breaking the page.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from spire_fabric.errors import SpireFabricError
from spire_fabric.identity import BundleDiff, diff_bundles
from spire_fabric.runtime.deployment import ComponentHealth, Deployment, ServerReplica
from spire_fabric.server import (
    AttestedAgent,
    AuthorityStates,
    Bundle,
    Entry,
    FederationRelationship,
    ServerInfo,
)

from ._telemetry import Sample, fetch_samples, value_of

__all__ = ["Snapshot", "collect"]

CALL_TIMEOUT = 2.0


@dataclass
class ServerView:
    name: str
    trust_domain: str
    live: bool = False
    ready: bool = False
    info: ServerInfo | None = None
    version: str | None = None
    bundle: Bundle | None = None
    x509_state: AuthorityStates | None = None
    jwt_state: AuthorityStates | None = None
    # every replica (one locally; a pod each on Kubernetes), ready or not, and the one
    # whose controller manager leads
    replicas: tuple[ServerReplica, ...] = ()
    errors: list[str] = field(default_factory=list)


@dataclass
class AgentView:
    server: str
    agent: AttestedAgent
    name: str | None  # the topology's name for it, when it is one of ours
    healthy: bool | None


@dataclass
class FederationView:
    server: str  # the server holding the copy
    trust_domain: str  # the peer trust domain
    relationship: FederationRelationship | None
    local_copy: Bundle | None  # what `server` holds of the peer
    peer_bundle: Bundle | None  # what the peer's own server says
    diff: BundleDiff | None
    fetches: dict[str, float] = field(default_factory=dict)  # telemetry: status -> count
    # when this dashboard last saw the fetch count grow (SPIRE's API has no such time)
    last_fetch_seen: float | None = None

    @property
    def mismatch(self) -> bool:
        return self.local_copy is None or self.peer_bundle is None or bool(self.diff)


@dataclass
class WorkloadView:
    name: str
    spiffe_id: str
    agent: str
    healthy: bool | None
    serial: str | None = None
    expires_at: float | None = None
    address: str | None = None


@dataclass
class Snapshot:
    deployment: str
    target: str
    taken_at: float
    generation: int
    topology: Any
    status: list[ComponentHealth]
    servers: list[ServerView]
    agents: list[AgentView]
    entries: list[tuple[str, Entry]]
    federation: list[FederationView]
    workloads: list[WorkloadView]
    telemetry: dict[str, list[Sample]]
    telemetry_errors: dict[str, str]
    errors: list[str]

    def health(self) -> dict[str, bool | None]:
        return {row.name: row.healthy for row in self.status}


def _scrape(deployment: Deployment, component: str) -> tuple[list[Sample] | None, str]:
    """One component's telemetry samples, or why not (on Kubernetes reached through the
    deployment's port-forward to its pod, which needs a running pod)."""
    try:
        address = deployment.telemetry_endpoint(component)
        if address is None:
            return None, ""
        return fetch_samples(*address, timeout=CALL_TIMEOUT), ""
    except (OSError, SpireFabricError) as e:
        return None, str(e) or type(e).__name__


def _version(samples: list[Sample], metric: str) -> str | None:
    for s in samples:
        if s.name == metric and s.label("version"):
            return s.label("version").replace("_", ".")  # type: ignore[union-attr]
    return None


def collect(deployment: Deployment, generation: int = 0) -> Snapshot:
    topology = deployment.topology
    errors: list[str] = []
    components = [s.name for s in topology.servers] + [a.name for a in topology.agents]
    # status (health checks) and every telemetry scrape at once: a hung component costs
    # one timeout, not one per thing asked of it
    with ThreadPoolExecutor(max_workers=len(components) + 1) as pool:
        status_future = pool.submit(deployment.status)
        scrapes = {c: pool.submit(_scrape, deployment, c) for c in components}
        try:
            status = status_future.result()
        except Exception as e:  # a broken state must still render a page saying so
            status, errors = [], [f"status: {e}"]
        telemetry: dict[str, list[Sample]] = {}
        telemetry_errors: dict[str, str] = {}
        for component, future in scrapes.items():
            samples, error = future.result()
            if samples is not None:
                telemetry[component] = samples
            if error:
                telemetry_errors[component] = error
    health = {row.name: row.healthy for row in status}

    servers: list[ServerView] = []
    bundles: dict[str, Bundle] = {}
    agents: list[AgentView] = []
    entries: list[tuple[str, Entry]] = []
    held: dict[tuple[str, str], tuple[FederationRelationship | None, Bundle | None]] = {}
    agent_names = {}
    for a in topology.agents:
        try:
            agent_id = deployment.agent_id(a.name)
        except Exception:
            agent_id = None
        if agent_id is not None:
            agent_names[str(agent_id)] = a.name

    for s in topology.servers:
        view = ServerView(s.name, s.trust_domain.name)
        view.version = _version(telemetry.get(s.name, []), "spire_server_started")
        try:
            view.live, view.ready = deployment.server_health(s.name)
        except Exception as e:
            view.errors.append(f"health: {e}")
        try:
            view.replicas = deployment.server_replicas(s.name)
        except Exception as e:
            view.errors.append(f"replicas: {e}")
        if not view.live:
            servers.append(view)
            continue
        try:
            view.info = deployment.server_info(s.name)
        except Exception as e:
            view.errors.append(f"server info: {e}")
        try:
            with deployment.server(s.name) as api:
                view.bundle = api.get_bundle(timeout=CALL_TIMEOUT)
                bundles[s.trust_domain.name] = view.bundle
                view.x509_state = api.get_authority_state("x509", timeout=CALL_TIMEOUT)
                view.jwt_state = api.get_authority_state("jwt", timeout=CALL_TIMEOUT)
                for agent in api.list_agents(timeout=CALL_TIMEOUT):
                    name = agent_names.get(str(agent.id))
                    agents.append(AgentView(s.name, agent, name, health.get(name or "")))
                entries.extend((s.name, e) for e in api.list_entries(timeout=CALL_TIMEOUT))
                rels = {
                    r.trust_domain.name: r
                    for r in api.list_federation_relationships(timeout=CALL_TIMEOUT)
                }
                copies = {
                    b.trust_domain.name: b for b in api.list_federated_bundles(timeout=CALL_TIMEOUT)
                }
                for td in sorted(set(rels) | set(copies)):
                    held[(s.name, td)] = (rels.get(td), copies.get(td))
        except Exception as e:
            view.errors.append(f"Server API: {e}")
        servers.append(view)

    federation = []
    for (server, td), (rel, copy) in sorted(held.items()):
        peer = bundles.get(td)
        diff = diff_bundles(peer, copy) if peer is not None and copy is not None else None
        fetches = {
            (sample.label("status") or "?"): sample.value
            for sample in telemetry.get(server, [])
            if sample.name == "spire_server_bundle_manager_fetch_federated_bundle"
            and sample.label("trust_domain_id") == td.replace(".", "_")
        }
        federation.append(FederationView(server, td, rel, copy, peer, diff, fetches))

    workloads = _workloads(deployment, status, errors)
    return Snapshot(
        deployment=deployment.name,
        target=deployment.target,
        taken_at=time.time(),
        generation=generation,
        topology=topology,
        status=status,
        servers=servers,
        agents=agents,
        entries=entries,
        federation=federation,
        workloads=workloads,
        telemetry=telemetry,
        telemetry_errors=telemetry_errors,
        errors=errors,
    )


def _workloads(
    deployment: Deployment, status: list[ComponentHealth], errors: list[str]
) -> list[WorkloadView]:
    """Each workload's SVID as its agent serves it (the Workload API, as the workload sees
    it; locally the workloads run as this user, so this process is served the same SVIDs)."""
    from spire_fabric.workload import WorkloadApiClient

    health = {row.name: row.healthy for row in status}
    svids: dict[str, Any] = {}
    if deployment.target == "local":
        for agent in sorted({w.agent for w in deployment.topology.workloads}):
            if health.get(agent) is False:
                continue  # a hung agent would cost the whole refresh a timeout
            try:
                endpoint = deployment.agent_endpoint(agent)
                with WorkloadApiClient(endpoint, timeout=CALL_TIMEOUT, wait_for_socket=0) as client:
                    for svid in client.fetch_x509_context(timeout=CALL_TIMEOUT).svids:
                        svids[str(svid.spiffe_id)] = svid
            except Exception as e:
                errors.append(f"Workload API of {agent}: {e}")
    # Elsewhere (Kubernetes) the workloads run in pods: `status` fetched each one's SVID
    # inside its pod, as the workload sees it, and its rows carry expiry and serial.
    rows = {row.name: row for row in status if row.kind == "workload"}
    views = []
    for w in deployment.topology.workloads:
        held = svids.get(w.spiffe_id)
        row = rows.get(w.name)
        serial = None if held is None else format(held.leaf.serial_number, "x")
        expires_at = None if held is None else held.leaf.not_valid_after_utc.timestamp()
        if held is None and row is not None and row.svid_expires_at is not None:
            serial, expires_at = row.extra.get("svid_serial"), float(row.svid_expires_at)
        address = None
        try:
            found = deployment.workload_address(w.name)
            address = found.url if found else None
        except Exception:
            address = None
        views.append(
            WorkloadView(
                name=w.name,
                spiffe_id=w.spiffe_id,
                agent=w.agent,
                healthy=health.get(w.name),
                serial=serial,
                expires_at=expires_at,
                address=address,
            )
        )
    return views


def metric(snapshot: Snapshot, component: str, name: str, **labels: str) -> float | None:
    return value_of(snapshot.telemetry.get(component, []), name, **labels)
