"""A topology as supervised SPIRE processes on this machine: the local :class:`Deployment`.

This class only sequences; each concern lives in its own module: the state directory and
its lock (:mod:`.state`), the process plan (:mod:`.processes`, :mod:`.workloads`), SPIRE
bootstrap (:mod:`.bootstrap`), bounded waits (:mod:`.waits`), status (:mod:`.status`) and
the plan (:mod:`.planning`).

Nested SPIRE comes up in tiers: a server whose CA comes from another server
(``UpstreamAuthority "spire"``) starts only after its parent, the parent's agent and the
entry that lets it fetch its CA (``downstream = true``) are there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography import x509

import spire_fabric.runtime.local.bootstrap as bootstrap
import spire_fabric.runtime.local.waits as waits
from spire_fabric.entries import EntryPlan, plan_entries
from spire_fabric.identity import (
    BundleSet,
    JwtBundle,
    JwtSvid,
    SpiffeId,
    X509Bundle,
    join_token_agent_id,
)
from spire_fabric.render import RenderPaths
from spire_fabric.runtime._served import served_server_svid
from spire_fabric.runtime.binaries import SpireBinaries
from spire_fabric.runtime.ca_hierarchy import CaFiles, SigningCa, write_atomic
from spire_fabric.runtime.core import files_workload
from spire_fabric.runtime.core.versions import save_versions
from spire_fabric.runtime.deployment import (
    ComponentHealth,
    DeploymentPlan,
    ServerReplica,
    StepReporter,
    WorkloadAddress,
    WorkloadViews,
    no_report,
)
from spire_fabric.runtime.ghostunnel import ensure_ghostunnel
from spire_fabric.runtime.local._agent_data import stored_agent_svid
from spire_fabric.runtime.local._procfs import parent_pid
from spire_fabric.runtime.local._supervisor_client import SupervisorClient
from spire_fabric.runtime.local.bootstrap import UpError
from spire_fabric.runtime.local.context import LocalContext
from spire_fabric.runtime.local.localize import LOOPBACK, LocalSettings
from spire_fabric.runtime.local.monitoring import monitoring_components, monitoring_urls
from spire_fabric.runtime.local.planning import compute_plan, planned_versions
from spire_fabric.runtime.local.ports import port_in_use
from spire_fabric.runtime.local.processes import publish, write_configs
from spire_fabric.runtime.local.sidecars import svid_dir
from spire_fabric.runtime.local.state import DeploymentRecord, StateDir
from spire_fabric.runtime.local.status import status_rows
from spire_fabric.runtime.local.workloads import (
    WorkloadProcess,
    workload_files_dir,
    workload_processes,
)
from spire_fabric.server import Entry, ServerInfo
from spire_fabric.topology import DiskUpstreamAuthority, SpireUpstreamAuthority, Topology

if TYPE_CHECKING:
    # annotations only: the clients bring gRPC, which a local `plan` does not need
    from spire_fabric.server import SpireServerClient
    from spire_fabric.workload import WorkloadApiClient, X509Context

__all__ = ["LocalDeployment", "server_tiers"]

UNIX_SOCKET_PATH_MAX = 107


def server_tiers(topology: Topology) -> list[list[str]]:
    """Servers in start order: those with their own CA first, then each nested server
    after the server it gets its CA from."""
    tiers: list[list[str]] = []
    placed: set[str] = set()
    remaining = list(topology.servers)
    while remaining:
        tier = [
            s.name
            for s in remaining
            if not isinstance(s.upstream_authority, SpireUpstreamAuthority)
            or s.upstream_authority.server in placed
        ]
        if not tier:  # a cycle: validation refuses it, so this is a model bug
            raise UpError("nested servers form a cycle: " + ", ".join(s.name for s in remaining))
        tiers.append(tier)
        placed.update(tier)
        remaining = [s for s in remaining if s.name not in placed]
    return tiers



def _workload_api(endpoint: str, wait_for_socket: float) -> WorkloadApiClient:
    """A Workload API client, its module (gRPC) imported on first use, not by `plan`."""
    from spire_fabric.workload import WorkloadApiClient

    return WorkloadApiClient(endpoint, wait_for_socket=wait_for_socket)


class LocalDeployment:
    """One topology, one state directory. Construct with `create` (for `up`) or `open`."""

    target: Literal["local"] = "local"

    def __init__(self, ctx: LocalContext) -> None:
        self.ctx = ctx

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        topology: Topology,
        state_dir: Path,
        settings: LocalSettings,
        binaries: SpireBinaries | None = None,
    ) -> LocalDeployment:
        """For `up`: check the state dir belongs to this topology (or is new) first."""
        state = StateDir(state_dir)
        state.check_compatible(topology)
        record = DeploymentRecord(
            topology=topology.name,
            port_base=settings.port_base,
            datastore_url=settings.datastore_url,
            uid=settings.uid,
        )
        if state.exists():
            previous, _ = state.load()
            record.join_tokens = previous.join_tokens
        return cls(LocalContext(state, record, topology, binaries))

    @classmethod
    def open(
        cls, state_dir: str | os.PathLike[str], binaries: SpireBinaries | None = None
    ) -> LocalDeployment:
        state = StateDir(state_dir)
        record, topology = state.load()
        return cls(LocalContext(state, record, topology, binaries))

    # ---- what the Deployment interface offers -------------------------------------------

    @property
    def name(self) -> str:
        return self.ctx.local.name

    @property
    def topology(self) -> Topology:
        """The topology as this machine runs it (loopback ports, local selectors)."""
        return self.ctx.local

    @property
    def written_topology(self) -> Topology:
        """The topology as the user wrote it (what the state directory records)."""
        return self.ctx.topology

    @property
    def entry_owner(self) -> str:
        return bootstrap.entry_owner(self.ctx.local)

    def server(self, name: str) -> SpireServerClient:
        self.ctx.local.server(name)  # KeyError naming the server if unknown
        return self.ctx.server_client(name)

    def server_replicas(self, name: str) -> tuple[ServerReplica, ...]:
        """One: the local target runs one process per server (localize refuses more)."""
        return (ServerReplica(name, self.server_health(name)[1]),)

    def replica_server(self, name: str, replica: str) -> SpireServerClient:
        if replica != name:
            raise KeyError(f"server {name!r} runs one local replica, {name!r}, not {replica!r}")
        return self.server(name)

    def replica_server_svid(self, name: str, replica: str) -> tuple[x509.Certificate, ...]:
        self.replica_server(name, replica).close()  # KeyError naming the one replica
        s = self.ctx.local.server(name)
        with self.server(name) as client:
            roots = tuple(a.certificate for a in client.get_bundle(timeout=10).x509_authorities)
        return served_server_svid(s.host, s.ports.api, X509Bundle(s.trust_domain, roots))

    def restart_replica(self, name: str, replica: str) -> None:
        raise UpError(
            f"the local target runs one process per server ({name}), not replicas to "
            f"restart one by one ({replica}); replicas run with --target kubernetes"
        )

    def server_health(self, name: str) -> tuple[bool, bool]:
        s = self.ctx.local.server(name)
        return (
            waits.http_ok(s.host, s.ports.health, "/live"),
            waits.http_ok(s.host, s.ports.health, "/ready"),
        )

    def bundle_endpoint_url(self, name: str) -> str:
        s = self.ctx.local.server(name)
        return f"https://{s.host}:{s.ports.federation}"

    def agent_endpoint(self, name: str) -> str:
        return self.ctx.agent_endpoint(name)

    def agent_healthy(self, name: str) -> bool:
        return waits.agent_healthy(self.ctx, name)

    def agent_id(self, name: str) -> SpiffeId | None:
        agent = self.ctx.local.agent(name)
        token = self.ctx.record.join_tokens.get(name)
        if token is None:
            return None
        return join_token_agent_id(self.ctx.local.server(agent.server).trust_domain, token)

    def agent_svid_chain(self, name: str) -> tuple[x509.Certificate, ...] | None:
        self.ctx.local.agent(name)  # an unknown agent is refused, as everywhere
        return stored_agent_svid(Path(self.ctx.paths.agent_data_dir(name)))

    def workload_address(self, name: str) -> WorkloadAddress | None:
        for p in self.workload_processes():
            if p.workload.name == name and p.port is not None:
                return WorkloadAddress(name, LOOPBACK, p.port, SpiffeId.parse(p.workload.spiffe_id))
        return None

    def server_info(self, name: str) -> ServerInfo:
        with self.server(name) as client:
            return client.server_info(timeout=3)

    def telemetry_endpoint(self, component: str) -> tuple[str, int] | None:
        for s in self.topology.servers:
            if s.name == component:
                return None if s.ports.telemetry is None else (s.host, s.ports.telemetry)
        a = self.topology.agent(component)
        return None if a.telemetry_port is None else (a.host, a.telemetry_port)

    def root_ca(self) -> x509.Certificate | None:
        ca = bootstrap.root_ca(self.ctx)
        return ca.certificate if ca else None

    @property
    def ca_directory(self) -> Path:
        return self.ctx.state.ca_dir

    def place_signing_ca(self, server: str, ca: SigningCa) -> None:
        # the files the rendered config names; for the installer's own hierarchy they are
        # the CA store's current files, which `up` writes the same way (write_ca)
        s = self.topology.server(server)
        ua = s.upstream_authority
        t = self.topology
        if not isinstance(ua, DiskUpstreamAuthority) or t.ca is None or ua.cert_file:
            raise UpError(f"{server} reads no signing CA of the installer's hierarchy")
        p = self.paths
        write_atomic(Path(p.upstream_ca_cert(server, ua.ca)), ca.chain, 0o644)
        write_atomic(Path(p.upstream_ca_key(server, ua.ca)), ca.key, 0o600)
        write_atomic(Path(p.upstream_ca_bundle(server, t.ca.root.name)), ca.root, 0o644)

    def desired_entries(self, server: str) -> list[Entry]:
        return bootstrap.desired_entries(self.ctx, server)

    def entry_plan(self, server: str) -> EntryPlan:
        with self.server(server) as client:
            current = list(client.list_entries(id_prefix=f"{self.entry_owner}.", timeout=10))
        return plan_entries(current, self.desired_entries(server), owner=self.entry_owner)

    def x509_context(self, workload: str) -> X509Context:
        agent = self.ctx.local.workload(workload).agent
        with _workload_api(self.agent_endpoint(agent), wait_for_socket=0.5) as client:
            return client.fetch_x509_context(timeout=5)

    def jwt_svid(self, workload: str, audience: str) -> JwtSvid:
        w = self.ctx.local.workload(workload)
        with _workload_api(self.agent_endpoint(w.agent), wait_for_socket=1) as client:
            return client.fetch_jwt_svid(audience, subject=w.spiffe_id, timeout=5)

    def jwt_bundles(self, workload: str) -> BundleSet[JwtBundle]:
        agent = self.ctx.local.workload(workload).agent
        with _workload_api(self.agent_endpoint(agent), wait_for_socket=1) as client:
            return client.fetch_jwt_bundles(timeout=5)

    def workload_views(self, workload: str, audiences: Sequence[str] = ()) -> WorkloadViews:
        w = self.ctx.local.workload(workload)
        with _workload_api(self.agent_endpoint(w.agent), wait_for_socket=1) as client:
            return WorkloadViews(
                client.fetch_x509_context(timeout=5),
                client.fetch_jwt_bundles(timeout=5),
                {a: client.fetch_jwt_svid(a, subject=w.spiffe_id, timeout=5) for a in audiences},
            )

    # ---- local specifics ---------------------------------------------------------------

    @property
    def state(self) -> StateDir:
        return self.ctx.state

    @property
    def record(self) -> DeploymentRecord:
        return self.ctx.record

    @property
    def supervisor(self) -> SupervisorClient:
        return self.ctx.supervisor

    @property
    def binaries(self) -> SpireBinaries:
        return self.ctx.binaries

    @property
    def paths(self) -> RenderPaths:
        return self.ctx.paths

    def workload_processes(self) -> list[WorkloadProcess]:
        return workload_processes(self.ctx)

    def ensure_ca(self) -> dict[str, CaFiles]:
        return bootstrap.ensure_ca(self.ctx)

    # ---- lifecycle ---------------------------------------------------------------------

    def check(self) -> None:
        _ = self.ctx.binaries  # no SPIRE, no deployment: said first, with what was tried
        monitoring_components(self.ctx)  # no Prometheus installed: said before anything
        self._check_socket_paths()
        self._check_ports()

    def plan(self) -> DeploymentPlan:
        return compute_plan(self.ctx)

    def up(
        self, report: StepReporter = no_report, plan: DeploymentPlan | None = None
    ) -> DeploymentPlan:
        ctx = self.ctx
        with report("provision SPIRE binaries"):
            _ = ctx.binaries
        if any(s.mode != "files" for w in ctx.local.workloads for s in w.sidecars):
            with report("provision ghostunnel"):
                ensure_ghostunnel(lambda m: None)
        self.check()  # before anything is written: bad input changes nothing
        plan = plan if plan is not None else self.plan()
        versions = planned_versions(ctx)  # a skew SPIRE does not support changes nothing
        ctx.state.save(ctx.record, ctx.topology)
        with report("CA hierarchy"):
            bootstrap.ensure_ca(ctx)
        tiers = server_tiers(ctx.local)
        servers: list[str] = []
        agents: list[str] = []
        for i, tier in enumerate(tiers):
            of = f" (tier {i + 1} of {len(tiers)})" if len(tiers) > 1 else ""
            tier_agents = [a.name for a in ctx.local.agents if a.server in tier]
            if i > 0:
                # a nested server fetches its CA through its parent's agent at start
                with report("wait for nested servers' upstream SVIDs"):
                    waits.wait_for_svids(ctx, agents)
            with report("start SPIRE servers" + of):
                servers += tier
                write_configs(ctx, tier, [])
                self._publish(servers, agents)
                waits.wait_servers_ready(ctx, tier)
            with report("exchange federation bundles" + of):
                bootstrap.bootstrap_federation(ctx, set(servers))
            # Entries are registered before the agents start (their parents are the
            # agents' alias IDs, created with the join tokens), so each agent's first sync
            # after attestation already carries its workloads.
            with report("mint join tokens" + of):
                bootstrap.mint_join_tokens(ctx, tier_agents)
            with report("register workload entries" + of):
                bootstrap.apply_workload_entries(ctx, tier)
            # Prometheus and Alertmanager start with the last agents (and their
            # workloads), so their start overlaps the waits below
            last = i == len(tiers) - 1 and ctx.local.monitoring is not None
            with report("start agents" + of + (", Prometheus and Alertmanager" if last else "")):
                agents += tier_agents
                write_configs(ctx, [], tier_agents)
                self._publish(servers, agents, monitoring=last)
                waits.wait_agents_healthy(ctx, tier_agents)
        with report("wait for workload SVIDs"):
            waits.wait_for_svids(ctx, agents)
        if self.workload_processes():
            with report("wait for workloads"):
                waits.wait_workloads(ctx)
        if ctx.local.monitoring is not None:
            with report("wait for Prometheus to see every target up"):
                waits.wait_monitoring_ready(ctx)
        ctx.state.save(ctx.record, ctx.topology)
        save_versions(ctx.state.path, versions)
        return plan

    def _publish(self, servers: list[str], agents: list[str], *, monitoring: bool = False) -> None:
        """Publish the part of the plan that may run now (files first; what runs and this
        step has not reached stays as it runs: see :func:`.processes.publish`)."""
        publish(self.ctx, servers, agents, monitoring=monitoring)
        self.ctx.supervisor.ensure_running()

    def _check_socket_paths(self) -> None:
        """Unix socket paths are limited to 107 bytes; SPIRE fails obscurely past that."""
        ctx = self.ctx
        sockets = [ctx.paths.server_socket(s.name) for s in ctx.local.servers]
        for a in ctx.local.agents:
            sockets += [ctx.paths.agent_socket(a), ctx.paths.agent_admin_socket(a)]
        too_long = [p for p in sockets if len(p.encode()) > UNIX_SOCKET_PATH_MAX]
        if too_long:
            raise UpError(
                f"state directory {ctx.state.path} is too deep: the socket path "
                f"{too_long[0]} is {len(too_long[0].encode())} bytes, over the "
                f"{UNIX_SOCKET_PATH_MAX}-byte limit of unix sockets; pass a shorter --state-dir"
            )

    def _check_ports(self) -> None:
        ours = {s.pid for s in self.ctx.supervisor.states().values() if s.pid is not None}
        problems = []
        for host, port, what in self._ports():
            taken = port_in_use(host, port)
            # a component's descendant holds its port too (nginx's master and workers under
            # the inventory launcher: nginx overwrites its environment, so only its
            # ancestry says whose it is)
            if taken is not None and not _descends_from(taken.owner_pid, ours):
                problems.append(f"{what}: {taken.describe()}")
        if problems:
            raise UpError(
                "cannot start: " + "; ".join(problems) + ". Stop that process or move our "
                "ports with --port-base."
            )

    def _ports(self) -> list[tuple[str, int, str]]:
        ports = []
        for s in self.ctx.local.servers:
            ports += [
                (s.host, s.ports.api, f"{s.name} API"),
                (s.host, s.ports.health, f"{s.name} health"),
            ]
            if s.bundle_endpoint is not None:
                ports.append((s.host, s.ports.federation, f"{s.name} bundle endpoint"))
            if s.ports.telemetry is not None:
                ports.append((s.host, s.ports.telemetry, f"{s.name} telemetry"))
        for a in self.ctx.local.agents:
            if a.health_port is not None:
                ports.append((a.host, a.health_port, f"{a.name} health"))
            if a.telemetry_port is not None:
                ports.append((a.host, a.telemetry_port, f"{a.name} telemetry"))
        for p in self.workload_processes():
            if p.port is not None:
                ports.append((LOOPBACK, p.port, p.workload.name))
            metrics = p.workload.run.metrics_port if p.workload.run else None
            if metrics is not None:
                ports.append((LOOPBACK, metrics, f"{p.workload.name} metrics"))
        m = self.ctx.local.monitoring
        if m is not None:
            ports.append((LOOPBACK, m.prometheus_port, "prometheus"))
            ports.append((LOOPBACK, m.alertmanager_port, "alertmanager"))
        for w in self.ctx.local.workloads:
            for sc in w.sidecars:
                for what in ("app_port", "listen_port", "status_port"):
                    port = getattr(sc, what)
                    if port is not None:
                        ports.append((LOOPBACK, port, f"{w.name} sidecar {sc.name} {what}"))
        return ports

    def monitoring_urls(self) -> tuple[str, str] | None:
        return monitoring_urls(self.ctx)

    def sidecar_files(self, workload: str) -> dict[str, tuple[bytes, int]]:
        """The files a files-mode sidecar keeps for ``workload`` (name -> content, mode), as
        its app reads them: `verify` compares them with the agent's current SVID."""
        self.ctx.local.workload(workload)  # an unknown workload is refused, as everywhere
        directory = svid_dir(self.ctx.state.path, workload)
        out = {}
        for path in sorted(directory.glob("*")) if directory.is_dir() else ():
            if path.is_file() and not path.name.startswith("."):
                out[path.name] = (path.read_bytes(), path.stat().st_mode & 0o7777)
        return out

    def status(self, svids: bool = True) -> list[ComponentHealth]:
        return status_rows(self.ctx, svids)

    def workload_file(self, workload: str, name: str) -> bytes | None:
        files_workload(self.ctx.local, workload, name)
        path = workload_files_dir(self.ctx.state.path, workload) / name
        return path.read_bytes() if path.exists() else None

    def put_workload_file(self, workload: str, name: str, data: bytes) -> None:
        files_workload(self.ctx.local, workload, name)
        directory = workload_files_dir(self.ctx.state.path, workload)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, directory / name)  # a reader sees the old file or the new, whole

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own client."""

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def down(self, purge: bool = False) -> list[str]:
        stopped = self.ctx.supervisor.stop()
        if purge:
            shutil.rmtree(self.ctx.state.path)
        return [f"pid {pid}" for pid in stopped]


def _descends_from(pid: int | None, ours: set[int], depth: int = 4) -> bool:
    """Whether ``pid`` is one of ``ours`` or a descendant within ``depth`` generations."""
    for _ in range(depth + 1):
        if pid is None or pid <= 1:
            return False
        if pid in ours:
            return True
        pid = parent_pid(pid)
    return False
