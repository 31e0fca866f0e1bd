"""`up`, `status` and `down` of a topology on this machine, as supervised SPIRE processes.

The order of `up` matters and follows DESIGN.md: CA hierarchy, servers, federation bundles
exchanged through the Server API *before* any federating entry exists, agents attested with
join tokens minted through the API, entries reconciled with `apply_entries`, then the
workloads. Every step is idempotent, so `up` after `up`, after a crash or after a reboot
brings back only what is missing and never re-creates CAs or loses entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.render import RenderPaths, render_agent_config, render_server_config
from spire_fabric.runtime.binaries import SpireBinaries, ensure_spire
from spire_fabric.runtime.ca_hierarchy import (
    CaFiles,
    CertificateAuthority,
    create_root_ca,
    issue_intermediate_ca,
    load_ca,
    write_ca,
)
from spire_fabric.runtime.local._supervisor_client import SupervisorClient
from spire_fabric.runtime.local.example_workloads import ExampleProcess, example_processes
from spire_fabric.runtime.local.localize import LocalSettings, localize
from spire_fabric.runtime.local.ports import port_is_free
from spire_fabric.runtime.local.state import DeploymentRecord, StateDir, StateError
from spire_fabric.runtime.local.supervisor import Component
from spire_fabric.server import (
    Bundle,
    Entry,
    FederationRelationship,
    HttpsSpiffeProfile,
    HttpsWebProfile,
    NotFoundError,
    SpireApiError,
    SpireServerClient,
    apply_entries,
)
from spire_fabric.topology import (
    Agent,
    Server,
    Topology,
    Workload,
    endpoint_spiffe_id,
    workload_selectors,
)
from spire_fabric.workload import WorkloadApiClient

__all__ = [
    "ComponentHealth",
    "LocalDeployment",
    "StateError",
    "StepReporter",
    "UpError",
    "agent_alias_id",
    "entry_owner",
    "http_ok",
]

StepReporter = Callable[[str], AbstractContextManager[object]]

JOIN_TOKEN_TTL_S = 600
UNIX_SOCKET_PATH_MAX = 107
SERVER_START_TIMEOUT_S = 60.0
AGENT_START_TIMEOUT_S = 60.0
SVID_WAIT_TIMEOUT_S = 60.0


class UpError(RuntimeError):
    """A step of `up` failed; the message names the step, the component and its log."""


@contextlib.contextmanager
def _no_report(_: str) -> Iterator[None]:
    yield


def agent_alias_id(topology: Topology, agent: Agent) -> SpiffeId:
    """A stable SPIFFE ID for an agent, so entries survive re-attestation with a new token."""
    td = topology.server(agent.server).trust_domain
    return SpiffeId.parse(f"spiffe://{td}/spire-fabric/agent/{agent.name}")


def entry_owner(topology: Topology) -> str:
    """The owner name under which `apply_entries` manages this topology's entries."""
    return f"spire-fabric-{topology.name}"


def server_component(name: str) -> str:
    return f"server:{name}"


def agent_component(name: str) -> str:
    return f"agent:{name}"


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    kind: str  # server | agent | workload
    pid: int | None
    running: bool
    healthy: bool
    detail: str
    restarts: int
    last_exit: str | None
    svid_expires_at: int | None = None  # Unix seconds of the component's X.509-SVID


class LocalDeployment:
    """One topology, one state directory. Construct with `create` (for `up`) or `open`."""

    def __init__(
        self,
        state: StateDir,
        record: DeploymentRecord,
        topology: Topology,
        binaries: SpireBinaries | None = None,
    ) -> None:
        self.state = state
        self.record = record
        self.topology = topology  # as the user wrote it
        self.local = localize(topology, record.settings)  # as this machine runs it
        self.paths = RenderPaths.local(str(state.path))
        self.supervisor = SupervisorClient(state.path)
        self._binaries = binaries

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
        return cls(state, record, topology, binaries)

    @classmethod
    def open(cls, state_dir: Path, binaries: SpireBinaries | None = None) -> LocalDeployment:
        state = StateDir(state_dir)
        record, topology = state.load()
        return cls(state, record, topology, binaries)

    @property
    def binaries(self) -> SpireBinaries:
        if self._binaries is None:
            self._binaries = ensure_spire()
        return self._binaries

    # ---- up ----------------------------------------------------------------------------

    def up(self, report: StepReporter = _no_report) -> None:
        with report("provision SPIRE binaries"):
            _ = self.binaries
        self._check_socket_paths()  # before anything is written: bad input changes nothing
        self._check_ports()
        self.state.save(self.record, self.topology)
        with report("CA hierarchy (Enterprise Root and intermediates)"):
            self.ensure_ca()
        with report("start SPIRE servers"):
            self._start_servers()
        with report("exchange federation bundles"):
            self._bootstrap_federation()
        # Entries are registered before the agents start (their parents are the agents'
        # alias IDs, created with the join tokens), so each agent's first sync after
        # attestation already carries its workloads: no wait for the next sync interval.
        with report("mint join tokens"):
            self._mint_join_tokens()
        with report("register workload entries"):
            self._apply_entries()
        with report("start agents"):
            self._start_agents()
        with report("wait for workload SVIDs"):
            self._wait_for_workload_svids()
        if self.example_processes():
            with report("wait for example workloads"):
                self._wait_for_examples()
        self.state.save(self.record, self.topology)

    def ensure_ca(self) -> dict[str, CaFiles]:
        """Create the CA hierarchy once; later calls load what is on disk."""
        ca = self.local.ca
        if ca is None:
            return {}
        ca_dir = self.state.ca_dir
        root_files = _ca_files(ca_dir, ca.root.name)
        if root_files.key_path.exists():
            root = load_ca(root_files)
        else:
            root = create_root_ca(ca.root.common_name, ttl=ca.root.ttl)
            write_ca(root, ca_dir, ca.root.name)
        files = {ca.root.name: root_files}
        for inter in ca.intermediates:
            inter_files = _ca_files(ca_dir, inter.name)
            if not inter_files.key_path.exists():
                issued = issue_intermediate_ca(
                    root, inter.trust_domain, common_name=inter.common_name, ttl=inter.ttl
                )
                write_ca(issued, ca_dir, inter.name)
            files[inter.name] = inter_files
        return files

    def root_ca(self) -> CertificateAuthority | None:
        if self.local.ca is None:
            return None
        return load_ca(_ca_files(self.state.ca_dir, self.local.ca.root.name))

    def _check_socket_paths(self) -> None:
        """Unix socket paths are limited to 107 bytes; SPIRE fails obscurely past that."""
        sockets = [self.paths.server_socket(s.name) for s in self.local.servers]
        for a in self.local.agents:
            sockets += [self.paths.agent_socket(a.name), self.paths.agent_admin_socket(a.name)]
        too_long = [p for p in sockets if len(p.encode()) > UNIX_SOCKET_PATH_MAX]
        if too_long:
            raise UpError(
                f"state directory {self.state.path} is too deep: the socket path "
                f"{too_long[0]} is {len(too_long[0].encode())} bytes, over the "
                f"{UNIX_SOCKET_PATH_MAX}-byte limit of unix sockets; pass a shorter --state-dir"
            )

    def _check_ports(self) -> None:
        ours = {s.pid for s in self.supervisor.states().values() if s.pid is not None}
        problems = []
        for host, port, what in self._ports():
            taken = port_is_free(host, port)
            if taken is not None and taken.owner_pid not in ours:
                problems.append(f"{what}: {taken.describe()}")
        if problems:
            raise UpError(
                "cannot start: " + "; ".join(problems) + ". Stop that process or move our "
                "ports with --port-base."
            )

    def _ports(self) -> list[tuple[str, int, str]]:
        ports = []
        for s in self.local.servers:
            ports += [
                (s.host, s.ports.api, f"{s.name} API"),
                (s.host, s.ports.health, f"{s.name} health"),
            ]
            if s.bundle_endpoint is not None:
                ports.append((s.host, s.ports.federation, f"{s.name} bundle endpoint"))
        for a in self.local.agents:
            if a.health_port is not None:
                ports.append((a.host, a.health_port, f"{a.name} health"))
        for p in self.example_processes():
            if p.port is not None:
                ports.append(("127.0.0.1", p.port, f"{p.workload.name}"))
        return ports

    def _server_components(self) -> list[Component]:
        comps = []
        for s in self.local.servers:
            config = render_server_config(self.local, s.name, self.paths)
            conf_path = Path(self.paths.server_config(s.name))
            _write_if_changed(conf_path, config)
            Path(self.paths.server_data_dir(s.name)).mkdir(parents=True, exist_ok=True)
            Path(self.paths.server_socket(s.name)).parent.mkdir(parents=True, exist_ok=True)
            comps.append(
                Component(
                    name=server_component(s.name),
                    argv=(str(self.binaries.server), "run", "-config", str(conf_path)),
                    log_path=str(self.state.logs_dir / f"{s.name}.log"),
                    # a changed config restarts the process (the supervisor compares plans)
                    env={"SPIRE_FABRIC_CONFIG_SHA256": _sha(config)},
                )
            )
        return comps

    def _agent_components(self) -> list[Component]:
        comps = []
        for a in self.local.agents:
            token = self.record.join_tokens.get(a.name)
            if token is None:
                continue  # not attested yet: _start_agents adds it with a fresh token
            config = render_agent_config(self.local, a.name, self.paths)
            conf_path = Path(self.paths.agent_config(a.name))
            _write_if_changed(conf_path, config)
            argv = (str(self.binaries.agent), "run", "-config", str(conf_path))
            # The token is only used for the first attestation; afterwards the agent
            # reuses the SVID its disk key manager kept. It stays in argv so the plan
            # (and thus the process) does not change between `up` runs.
            argv += ("-joinToken", token)
            comps.append(
                Component(
                    name=agent_component(a.name),
                    argv=argv,
                    log_path=str(self.state.logs_dir / f"{a.name}.log"),
                    env={"SPIRE_FABRIC_CONFIG_SHA256": _sha(config)},
                )
            )
        return comps

    def example_processes(self) -> list[ExampleProcess]:
        """The example workloads this deployment runs (empty outside a source checkout)."""
        sockets = {a.name: self.paths.agent_socket(a.name) for a in self.local.agents}
        return example_processes(self.local, sockets, self.state.logs_dir, self.record.port_base)

    def _workload_components(self) -> list[Component]:
        # only once their agent is part of the plan: a workload without its agent's
        # socket would just wait for an identity and restart
        agents = set(self.record.join_tokens)
        return [p.component for p in self.example_processes() if p.workload.agent in agents]

    def _publish_plan(self) -> None:
        self.supervisor.set_components(
            self._server_components() + self._agent_components() + self._workload_components()
        )
        self.supervisor.ensure_running()

    def _start_servers(self) -> None:
        self._publish_plan()
        for s in self.local.servers:
            self._wait(
                lambda s=s: http_ok(s.host, s.ports.health, "/ready"),
                SERVER_START_TIMEOUT_S,
                f"{s.name} did not become ready on {s.host}:{s.ports.health}/ready",
                server_component(s.name),
            )

    def server_client(self, server: Server | str) -> SpireServerClient:
        name = server if isinstance(server, str) else server.name
        return SpireServerClient(f"unix://{self.paths.server_socket(name)}")

    def _bootstrap_federation(self) -> None:
        for fed in self.local.federations:
            owner = self.local.server(fed.server)
            remote = next(iter(self.local.servers_of(fed.trust_domain)), None)
            if remote is None:
                continue
            with self.server_client(remote) as rc:
                remote_bundle = rc.get_bundle()
            url = f"https://{remote.host}:{remote.ports.federation}"
            profile: HttpsSpiffeProfile | HttpsWebProfile
            if fed.profile == "https_spiffe":
                endpoint_id = endpoint_spiffe_id(fed)
                profile = HttpsSpiffeProfile(endpoint_spiffe_id=SpiffeId.parse(endpoint_id))
            else:
                profile = HttpsWebProfile()
            td = TrustDomain.parse(fed.trust_domain)
            with self.server_client(owner) as oc:
                try:
                    existing = oc.get_federation_relationship(td)
                except NotFoundError:
                    existing = None
                if existing is None:
                    oc.create_federation_relationships(
                        [FederationRelationship(td, url, profile, remote_bundle)]
                    ).raise_for_errors()
                elif existing.bundle_endpoint_url != url or existing.profile != profile:
                    oc.update_federation_relationships(
                        [FederationRelationship(td, url, profile)],
                        fields=["bundle_endpoint_url", "bundle_endpoint_profile"],
                    ).raise_for_errors()
                try:
                    oc.get_federated_bundle(td)
                except NotFoundError:
                    # deleted behind our back: put the current one back
                    oc.set_federated_bundles([remote_bundle]).raise_for_errors()

    def _mint_join_tokens(self) -> None:
        for a in self.local.agents:
            server = self.local.server(a.server)
            bootstrap = Path(self.paths.agent_trust_bundle(a.name))
            with self.server_client(server) as client:
                bundle = client.get_bundle()
                _write_if_changed(bootstrap, _bundle_pem(bundle))
                if a.name not in self.record.join_tokens or not self._agent_attested(a):
                    try:
                        token = client.create_join_token(
                            ttl=JOIN_TOKEN_TTL_S, agent_id=agent_alias_id(self.local, a)
                        )
                    except SpireApiError as err:
                        raise UpError(f"join token for {a.name}: {err}") from err
                    self._reset_agent_data(a)
                    self.record.join_tokens[a.name] = token.value
        self.state.save(self.record, self.topology)

    def _start_agents(self) -> None:
        self._publish_plan()
        for a in self.local.agents:
            self._wait(
                lambda a=a: self.agent_healthy(a),
                AGENT_START_TIMEOUT_S,
                f"{a.name} did not become healthy",
                agent_component(a.name),
            )

    def _agent_attested(self, agent: Agent) -> bool:
        # SPIRE 1.13 keeps the agent SVID in agent-data.json (pkg/agent/storage)
        return (Path(self.paths.agent_data_dir(agent.name)) / "agent-data.json").exists()

    def _reset_agent_data(self, agent: Agent) -> None:
        """A new join token means a new attestation: drop a stale SVID and key."""
        data = Path(self.paths.agent_data_dir(agent.name))
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True)
        for path in (
            self.paths.agent_socket(agent.name),
            self.paths.agent_admin_socket(agent.name),
        ):
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def agent_healthy(self, agent: Agent) -> bool:
        if agent.health_port is not None:
            return http_ok(agent.host, agent.health_port, "/ready")
        result = subprocess.run(
            [
                str(self.binaries.agent),
                "healthcheck",
                "-socketPath",
                self.paths.agent_socket(agent.name),
            ],
            capture_output=True,
        )
        return result.returncode == 0

    def desired_entries(self, server: Server) -> list[Entry]:
        entries = []
        for w in self.local.workloads:
            agent = self.local.agent(w.agent)
            if agent.server != server.name:
                continue
            entries.append(
                Entry(
                    spiffe_id=SpiffeId.parse(w.spiffe_id),
                    parent_id=agent_alias_id(self.local, agent),
                    selectors=tuple(workload_selectors(w, "local")),
                    x509_svid_ttl=int(w.x509_svid_ttl.total_seconds()) if w.x509_svid_ttl else 0,
                    jwt_svid_ttl=int(w.jwt_svid_ttl.total_seconds()) if w.jwt_svid_ttl else 0,
                    federates_with=tuple(TrustDomain.parse(t) for t in w.federates_with),
                    dns_names=tuple(w.dns_names),
                    downstream=w.downstream,
                    hint=w.hint or "",
                )
            )
        return entries

    def _apply_entries(self) -> None:
        for s in self.local.servers:
            with self.server_client(s) as client:
                result = apply_entries(
                    client, self.desired_entries(s), owner=entry_owner(self.local)
                )
            try:
                result.raise_for_errors()
            except Exception as err:
                raise UpError(f"registering entries on {s.name}: {err}") from err

    def _wait_for_workload_svids(self) -> None:
        for w in self.local.workloads:
            socket = f"unix://{self.paths.agent_socket(w.agent)}"
            deadline = time.monotonic() + SVID_WAIT_TIMEOUT_S
            last_error: Exception | None = None
            while time.monotonic() < deadline:
                try:
                    with WorkloadApiClient(socket) as client:
                        ids = {str(s.spiffe_id) for s in client.fetch_x509_svids()}
                    if w.spiffe_id in ids:
                        break
                    last_error = None
                except Exception as err:  # the agent may not have synced yet
                    last_error = err
                time.sleep(0.25)
            else:
                raise UpError(
                    f"workload {w.name}: agent {w.agent} did not issue {w.spiffe_id} within "
                    f"{SVID_WAIT_TIMEOUT_S:.0f}s"
                    + (f" ({last_error})" if last_error else "")
                    + f"; see {self.state.logs_dir / (w.agent + '.log')}"
                )

    def _wait_for_examples(self) -> None:
        for p in self.example_processes():
            if p.port is None:
                continue
            self._wait(
                lambda p=p: _tcp_open("127.0.0.1", p.port),
                SVID_WAIT_TIMEOUT_S,
                f"example {p.workload.name} is not listening on 127.0.0.1:{p.port}",
                p.component.name,
            )

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str, component: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.1)
        state = self.supervisor.states().get(component)
        log = self.state.logs_dir / f"{component.split(':', 1)[1]}.log"
        extra = f" (last exit: {state.last_exit})" if state and state.last_exit else ""
        raise UpError(f"{what} within {timeout:.0f}s{extra}; log: {log}\n{_tail(log)}")

    # ---- status ------------------------------------------------------------------------

    def _server_svid_expiry(self, server: Server) -> int | None:
        try:
            with self.server_client(server) as client:
                chain = client.server_info(timeout=3).svid_chain
        except Exception:
            return None
        return chain[0].expires_at if chain else None

    def _agent_svid_expiries(self) -> dict[str, int]:
        """Agent SVID expiry as each server knows it (by the join token the agent used)."""
        result: dict[str, int] = {}
        for s in self.local.servers:
            try:
                with self.server_client(s) as client:
                    agents = {str(a.id): a for a in client.list_agents(timeout=3)}
            except Exception:
                continue
            for a in self.local.agents_of(s.name):
                token = self.record.join_tokens.get(a.name)
                info = agents.get(f"spiffe://{s.trust_domain}/spire/agent/join_token/{token}")
                if info is not None:
                    result[a.name] = info.x509svid_expires_at
        return result

    def _workload_svid_expiry(self, workload: Workload) -> int | None:
        try:
            with WorkloadApiClient(
                f"unix://{self.paths.agent_socket(workload.agent)}", wait_for_socket=0.2
            ) as client:
                svids = client.fetch_x509_svids(timeout=3)
        except Exception:
            return None
        for svid in svids:
            if str(svid.spiffe_id) == workload.spiffe_id:
                return int(svid.leaf.not_valid_after_utc.timestamp())
        return None

    def status(self) -> list[ComponentHealth]:
        states = self.supervisor.states()
        agent_expiry = self._agent_svid_expiries()
        rows = []
        for s in self.local.servers:
            st = states.get(server_component(s.name))
            healthy = http_ok(s.host, s.ports.health, "/ready")
            rows.append(
                ComponentHealth(
                    name=s.name,
                    kind="server",
                    pid=st.pid if st else None,
                    running=bool(st and st.running),
                    healthy=healthy,
                    detail=f"api :{s.ports.api}, bundle endpoint :{s.ports.federation}",
                    restarts=st.restarts if st else 0,
                    last_exit=st.last_exit if st else None,
                    svid_expires_at=self._server_svid_expiry(s) if healthy else None,
                )
            )
        for a in self.local.agents:
            st = states.get(agent_component(a.name))
            rows.append(
                ComponentHealth(
                    name=a.name,
                    kind="agent",
                    pid=st.pid if st else None,
                    running=bool(st and st.running),
                    healthy=bool(st and st.running) and self.agent_healthy(a),
                    detail=f"-> {a.server}",
                    restarts=st.restarts if st else 0,
                    last_exit=st.last_exit if st else None,
                    svid_expires_at=agent_expiry.get(a.name),
                )
            )
        for p in self.example_processes():
            st = states.get(p.component.name)
            running = bool(st and st.running)
            listening = p.port is None or _tcp_open("127.0.0.1", p.port)
            rows.append(
                ComponentHealth(
                    name=p.workload.name,
                    kind="workload",
                    pid=st.pid if st else None,
                    running=running,
                    healthy=running and listening,
                    detail=f"https://127.0.0.1:{p.port}" if p.port else "client",
                    restarts=st.restarts if st else 0,
                    last_exit=st.last_exit if st else None,
                    svid_expires_at=self._workload_svid_expiry(p.workload),
                )
            )
        return rows

    # ---- down --------------------------------------------------------------------------

    def down(self, purge: bool = False) -> list[int]:
        stopped = self.supervisor.stop()
        if purge:
            shutil.rmtree(self.state.path)
        return stopped


def _ca_files(ca_dir: Path, name: str) -> CaFiles:
    return CaFiles(
        cert_path=ca_dir / f"{name}.crt",
        key_path=ca_dir / f"{name}.key",
        bundle_path=ca_dir / f"{name}-bundle.crt",
    )


def _bundle_pem(bundle: Bundle) -> str:
    return "".join(
        a.certificate.public_bytes(serialization.Encoding.PEM).decode()
        for a in bundle.x509_authorities
    )


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def http_ok(host: str, port: int, path: str) -> bool:
    """GET a SPIRE health endpoint directly (http.client: no proxy settings apply)."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"

