"""A topology made real on Kubernetes: the Kubernetes :class:`Deployment`.

``up`` applies what the renderer makes, with server-side apply as ``spire-fabric``, in
dependency order across the clusters: namespaces, CRDs (waited until Established), RBAC,
secrets the installer alone may make (database passwords, each server's intermediate CA),
MySQL, the servers; then federation bundles are bootstrapped through the Server API before
anything federating is registered; then agents (their nodes labelled first: k8s_psat names
an agent by its node), registrations (controller-manager resources, or entries through the
SPIRE API), and the workloads. Each rollout is waited for, and a wait that fails says why.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes.client.exceptions import ApiException

from spire_fabric.entries import EntryChange, EntryPlan, apply_entries, plan_entries
from spire_fabric.identity import SpiffeId, agent_alias_id, join_token_agent_id
from spire_fabric.render.kubernetes._common import (
    agent_node_selector,
    selector_labels,
)
from spire_fabric.render.kubernetes._mysql import mysql_instance, mysql_secret
from spire_fabric.render.kubernetes._servers import upstream_ca_secret_name
from spire_fabric.runtime.ca_hierarchy import (
    CaFiles,
    create_root_ca,
    issue_intermediate_ca,
    load_ca,
    write_ca,
)
from spire_fabric.runtime.deployment import (
    Change,
    ComponentHealth,
    DeploymentPlan,
    StepReporter,
    WorkloadAddress,
    no_report,
)
from spire_fabric.runtime.kubernetes import _objects as objects
from spire_fabric.runtime.kubernetes._adapt import adapt, node_addresses
from spire_fabric.runtime.kubernetes._clusters import (
    ClusterApi,
    api_error_message,
    connect,
    label_selector,
    resolve_contexts,
)
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._identity import WorkloadIdentity
from spire_fabric.runtime.kubernetes._pods import PortForward, running_pod
from spire_fabric.runtime.kubernetes._preflight import preflight
from spire_fabric.runtime.kubernetes._registrations import (
    controller_manager_entries,
    registration_entries,
)
from spire_fabric.runtime.kubernetes._spire import ServerAccess
from spire_fabric.runtime.kubernetes._state import (
    KubernetesSettings,
    default_state_dir,
    load,
    save,
)
from spire_fabric.runtime.kubernetes._waits import (
    rollout_done,
    wait_crds_established,
    wait_rollouts,
)
from spire_fabric.server import Bundle, Entry, NotFoundError, ServerInfo, SpireServerClient
from spire_fabric.topology import SpireUpstreamAuthority, Topology, agent_node_attestor
from spire_fabric.workload import X509Context

__all__ = ["KubernetesDeployment"]

Obj = dict[str, Any]
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
PLACEMENT_MANAGER = "spire-fabric-placement"
# Apply order: registrations before the workloads that need them to get an identity.
_ORDER = ("00-", "01-", "02-", "secrets", "03-", "04-", "federation", "05-", "07-", "06-")


class KubernetesDeployment:
    """One topology on one or more clusters. ``create`` for `up`, ``open`` afterwards."""

    target: Literal["kubernetes"] = "kubernetes"

    def __init__(self, topology: Topology, settings: KubernetesSettings, state_dir: Path) -> None:
        self.written_topology = topology
        self.settings = settings
        self.state_dir = state_dir
        self._clusters: dict[str, ClusterApi] | None = None
        self._topology: Topology | None = None
        self._servers: dict[str, ServerAccess] = {}
        self._forwards: dict[str, PortForward] = {}
        self._placement: dict[str, dict[str, dict[str, str]]] | None = None
        self._writing = False  # set by `up` after its checks: before, nothing is written
        self.kept: list[str] = []  # what `down` left because others still use it
        # status and the dashboard read from threads: connections, admin SVIDs and
        # port-forwards are made once each
        self._lock = threading.RLock()

    @classmethod
    def create(
        cls, topology: Topology, settings: KubernetesSettings, state_dir: Path | None = None
    ) -> KubernetesDeployment:
        d = cls(topology, settings, state_dir or default_state_dir(topology.name))
        d.settings.contexts = resolve_contexts(topology, settings.kubeconfig, settings.contexts)
        return d

    @classmethod
    def open(cls, state_dir: Path) -> KubernetesDeployment:
        topology, settings = load(state_dir)
        return cls(topology, settings, state_dir)

    # ---- connections -----------------------------------------------------------------

    @property
    def clusters(self) -> dict[str, ClusterApi]:
        with self._lock:
            if self._clusters is None:
                contexts = resolve_contexts(
                    self.written_topology, self.settings.kubeconfig, self.settings.contexts
                )
                self._clusters = connect(self.written_topology, self.settings.kubeconfig, contexts)
            return self._clusters

    def close(self) -> None:
        for access in self._servers.values():
            access.close()
        for pf in self._forwards.values():
            pf.close()
        self._servers.clear()
        self._forwards.clear()
        for c in (self._clusters or {}).values():
            c.close()
        self._clusters = None

    def __enter__(self) -> KubernetesDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the Deployment interface ------------------------------------------------------

    @property
    def name(self) -> str:
        return self.written_topology.name

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            self._topology = adapt(self.written_topology, self.clusters, self.settings)
        return self._topology

    @property
    def entry_owner(self) -> str:
        return f"spire-fabric-{self.name}"

    def _access(self, name: str) -> ServerAccess:
        with self._lock:
            if name not in self._servers:
                s = self.topology.server(name)
                assert s.kubernetes is not None
                self._servers[name] = ServerAccess(self.clusters[s.kubernetes.cluster], s)
            return self._servers[name]

    def server(self, name: str) -> SpireServerClient:
        return self._access(name).client()

    def server_health(self, name: str) -> tuple[bool, bool]:
        return self._access(name).health()

    def server_info(self, name: str) -> ServerInfo:
        return self._access(name).server_info()

    def bundle_endpoint_url(self, name: str) -> str:
        s = self.topology.server(name)
        k = s.kubernetes
        assert k is not None
        if k.node_ports.federation is not None:
            node = self.topology.cluster(k.cluster).effective_node_address
            return f"https://{node}:{k.node_ports.federation}"
        pf = self._forward(f"federation:{name}", k.cluster, k.namespace,
                           selector_labels(name, "server"), s.ports.federation)  # fmt: skip
        return f"https://{pf.address}"

    def agent_endpoint(self, name: str) -> str:
        a = self.topology.agent(name)
        assert a.kubernetes is not None
        return f"kubernetes://{a.kubernetes.cluster}/{a.kubernetes.namespace}/{name}"

    def agent_healthy(self, name: str) -> bool:
        a = self.topology.agent(name)
        assert a.kubernetes is not None
        live = objects.get_live(
            self.clusters[a.kubernetes.cluster],
            objects.ObjectRef("apps/v1", "DaemonSet", a.kubernetes.namespace, name),
        )
        return live is not None and rollout_done(live)[0]

    def agent_id(self, name: str) -> SpiffeId | None:
        a = self.topology.agent(name)
        k = a.kubernetes
        assert k is not None
        td = self.topology.server(a.server).trust_domain
        conn = self.clusters[k.cluster]
        if agent_node_attestor(a, "kubernetes") != "k8s_psat":
            token = self._join_token(a.name)
            return join_token_agent_id(td, token) if token else None
        try:
            pods = conn.core.list_namespaced_pod(
                k.namespace,
                label_selector=label_selector(selector_labels(name, "agent")),
            ).items
        except ApiException:
            return None
        for pod in pods:
            if pod.spec.node_name:
                node = conn.core.read_node(pod.spec.node_name)
                return SpiffeId.parse(
                    f"spiffe://{td}/spire/agent/k8s_psat/{k.cluster}/{node.metadata.uid}"
                )
        return None

    def workload_address(self, name: str) -> WorkloadAddress | None:
        w = self.topology.workload(name)
        k = w.kubernetes
        if k is None or k.service_port is None or (w.run is None and not k.command):
            return None
        cluster = self._workload_cluster(name)
        sid = SpiffeId.parse(w.spiffe_id)
        if k.node_port is not None:
            node = self.topology.cluster(cluster).effective_node_address
            return WorkloadAddress(name, node, k.node_port, sid)
        pf = self._forward(f"workload:{name}", cluster, k.namespace,
                           selector_labels(name, "workload"), k.service_port)  # fmt: skip
        return WorkloadAddress(name, "127.0.0.1", pf.local_port, sid)

    def telemetry_endpoint(self, component: str) -> tuple[str, int] | None:
        """A port-forward of our own to the pod's telemetry port (a containerPort, not a
        Service: metrics are read per pod, and nothing outside the cluster needs them)."""
        where: tuple[str, str] | None = None
        for s in self.topology.servers:
            if s.name == component:
                port, role = s.ports.telemetry, "server"
                if s.kubernetes is not None:
                    where = (s.kubernetes.cluster, s.kubernetes.namespace)
                break
        else:
            a = self.topology.agent(component)
            port, role = a.telemetry_port, "agent"
            if a.kubernetes is not None:
                where = (a.kubernetes.cluster, a.kubernetes.namespace)
        if port is None or where is None:
            return None
        pf = self._forward(f"telemetry:{component}", *where,
                           selector_labels(component, role), port)  # fmt: skip
        return "127.0.0.1", pf.local_port

    def root_ca(self) -> x509.Certificate | None:
        ca = self.topology.ca
        if ca is None:
            return None
        files = self._ca_files(ca.root.name)
        return load_ca(files).certificate if files.key_path.exists() else None

    def desired_entries(self, server: str) -> list[Entry]:
        if self.topology.kubernetes.registration == "spire-api":
            return registration_entries(self.topology, server, self._join_token)
        return controller_manager_entries(self, server)

    def entry_plan(self, server: str) -> EntryPlan:
        """Desired entries against the server's; entries the controller manager made are
        matched by (SPIFFE ID, parent), since it chooses their IDs itself."""
        desired = self.desired_entries(server)
        with self.server(server) as client:
            current = list(client.list_entries(timeout=10))
        if self.topology.kubernetes.registration == "spire-api":
            return plan_entries(current, desired, owner=self.entry_owner)
        prefix = f"{server}."
        have = {(e.spiffe_id, e.parent_id): e for e in current if e.id.startswith(prefix)}
        changes: list[EntryChange] = []
        unchanged: list[Entry] = []
        for e in desired:
            cur = have.pop((e.spiffe_id, e.parent_id), None)
            if cur is None:
                changes.append(EntryChange("create", e))
            elif cur.diff(e):
                changes.append(EntryChange("update", e, frozenset(cur.diff(e)), cur))
            else:
                unchanged.append(cur)
        live_pods = self._pod_uids(server)
        for e in have.values():
            uids = [sel.value.removeprefix("pod-uid:") for sel in e.selectors
                    if sel.type == "k8s" and sel.value.startswith("pod-uid:")]  # fmt: skip
            if uids and not set(uids) & live_pods:
                continue  # its pod is gone; the controller manager removes it on its next pass
            changes.append(EntryChange("delete", e))
        return EntryPlan(tuple(changes), tuple(unchanged))

    def _pod_uids(self, server: str) -> set[str]:
        k = self.topology.server(server).kubernetes
        assert k is not None
        pods = self.clusters[k.cluster].core.list_pod_for_all_namespaces().items
        return {str(p.metadata.uid) for p in pods}

    def x509_context(self, workload: str) -> X509Context:
        return self._identity(workload).x509_context()

    def jwt_svid(self, workload: str, audience: str) -> Any:
        return self._identity(workload).jwt(audience)[0]

    def jwt_bundles(self, workload: str) -> Any:
        return self._identity(workload).jwt_bundles()

    def _identity(self, workload: str) -> WorkloadIdentity:
        w = self.topology.workload(workload)
        return WorkloadIdentity(self.clusters[self._workload_cluster(workload)], self.topology, w)

    def _workload_cluster(self, name: str) -> str:
        agent = self.topology.agent(self.topology.workload(name).agent)
        assert agent.kubernetes is not None
        return agent.kubernetes.cluster

    def _forward(
        self, key: str, cluster: str, namespace: str, labels: dict[str, str], port: int
    ) -> PortForward:
        conn = self.clusters[cluster]
        pod = running_pod(conn, namespace, labels)
        with self._lock:
            pf = self._forwards.get(key)
            if pf is None or pf.pod != pod:
                if pf is not None:
                    pf.close()
                pf = PortForward(conn, namespace, pod, port)
                self._forwards[key] = pf
            return pf

    # ---- what `up` applies -------------------------------------------------------------

    def rendered(self) -> list[tuple[str, str, Obj]]:
        """(cluster, stage, object) for every rendered object, secrets filled in."""
        from spire_fabric.render.kubernetes import staged_objects

        out: list[tuple[str, str, Obj]] = []
        for cluster, file, objs in staged_objects(self.topology):
            for o in objs:
                out.append((cluster, file[:3], o))
        filled = {objects.ObjectRef.of(o): (c, o) for c, o in self._secrets()}
        result = []
        for cluster, stage, o in out:
            ref = objects.ObjectRef.of(o)
            if ref in filled:
                o = filled.pop(ref)[1]
            result.append((cluster, stage, o))
        result += [(c, "secrets", o) for c, o in filled.values()]
        return result

    def _secrets(self) -> list[tuple[str, Obj]]:
        """The Secrets only the installer may fill: kept as they are once they exist."""
        out: list[tuple[str, Obj]] = []
        t = self.topology
        for s in t.servers:
            k = s.kubernetes
            if k is None:
                continue
            conn = self.clusters[k.cluster]
            if mysql_instance(s) is not None:
                inst = mysql_instance(s)
                assert inst is not None
                live = objects.get_live(
                    conn, objects.ObjectRef("v1", "Secret", k.namespace, inst.password_secret)
                )
                data = (live or {}).get("data") or {}
                if "password" in data and "root-password" in data:
                    pw = base64.b64decode(data["password"]).decode()
                    root = base64.b64decode(data["root-password"]).decode()
                else:
                    pw, root = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
                out.append((k.cluster, mysql_secret(t, s, password=pw, root_password=root)))
        for s, chain, key, bundle in self._upstream_cas():
            assert s.kubernetes is not None
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": upstream_ca_secret_name(s),
                    "namespace": s.kubernetes.namespace,
                    "labels": _labels(t, s.kubernetes.cluster, s.name, "upstream-ca"),
                },
                "type": "Opaque",
                "data": {
                    "tls.crt": base64.b64encode(chain).decode(),
                    "tls.key": base64.b64encode(key).decode(),
                    "bundle.crt": base64.b64encode(bundle).decode(),
                },
            }
            out.append((s.kubernetes.cluster, body))
        for a in t.agents:
            if a.kubernetes is None or agent_node_attestor(a, "kubernetes") != "join_token":
                continue
            token = self._join_token(a.name)
            if token:
                out.append((a.kubernetes.cluster, self._token_secret(a.name, token)))
        return out

    def _token_secret(self, agent: str, token: str) -> Obj:
        from spire_fabric.render.kubernetes._agents import join_token_secret_name

        a = self.topology.agent(agent)
        assert a.kubernetes is not None
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": join_token_secret_name(a),
                "namespace": a.kubernetes.namespace,
                "labels": _labels(self.topology, a.kubernetes.cluster, a.name, "join-token"),
            },
            "type": "Opaque",
            "data": {"token": base64.b64encode(token.encode()).decode()},
        }

    def _join_token(self, agent: str) -> str | None:
        from spire_fabric.render.kubernetes._agents import join_token_secret_name

        a = self.topology.agent(agent)
        assert a.kubernetes is not None
        live = objects.get_live(
            self.clusters[a.kubernetes.cluster],
            objects.ObjectRef("v1", "Secret", a.kubernetes.namespace, join_token_secret_name(a)),
        )
        token = ((live or {}).get("data") or {}).get("token")
        return base64.b64decode(token).decode() if token else None

    def _ca_files(self, name: str) -> CaFiles:
        d = self.state_dir / "ca"
        # the layout write_ca writes (and the local target reads)
        return CaFiles(d / f"{name}.crt", d / f"{name}.key", d / f"{name}-bundle.crt")

    def _upstream_cas(self) -> list[tuple[Any, bytes, bytes, bytes]]:
        """(server, chain PEM, key PEM, root PEM) for servers signing with a disk CA."""
        from spire_fabric.topology import DiskUpstreamAuthority

        t = self.topology
        if t.ca is None:
            return []
        root_files = self._ca_files(t.ca.root.name)
        if not root_files.key_path.exists() and not self._writing:
            # `plan` writes nothing: the secrets show as objects to create, still empty
            return [(s, b"", b"", b"") for s in t.servers
                    if s.kubernetes is not None
                    and isinstance(s.upstream_authority, DiskUpstreamAuthority)]  # fmt: skip
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if root_files.key_path.exists():
            root = load_ca(root_files)
        else:
            root = create_root_ca(t.ca.root.common_name, ttl=t.ca.root.ttl)
            write_ca(root, self.state_dir / "ca", t.ca.root.name)
        out = []
        for s in t.servers:
            ua = s.upstream_authority
            if s.kubernetes is None or not isinstance(ua, DiskUpstreamAuthority):
                continue
            inter = next(i for i in t.ca.intermediates if i.name == ua.ca)
            files = self._ca_files(inter.name)
            if not files.key_path.exists():
                issued = issue_intermediate_ca(
                    root, inter.trust_domain, common_name=inter.common_name, ttl=inter.ttl
                )
                write_ca(issued, self.state_dir / "ca", inter.name)
            out.append(
                (s, files.cert_path.read_bytes(), files.key_path.read_bytes(),
                 root.certificate.public_bytes(serialization.Encoding.PEM))
            )  # fmt: skip
        return out

    def node_placement(self) -> dict[str, dict[str, dict[str, str]]]:
        """cluster -> node -> labels: each agent that shares its server and cluster with
        another gets a node of its own (the renderer's node selectors ask for these)."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        for c in self.topology.clusters:
            agents = [
                a for a in self.topology.agents
                if a.kubernetes is not None and a.kubernetes.cluster == c.name
                and agent_node_selector(self.topology, a)
            ]  # fmt: skip
            if not agents:
                continue
            nodes = [n for n, _ in node_addresses(self.clusters[c.name])]
            by_server: dict[str, list[str]] = {}
            for a in agents:
                by_server.setdefault(a.server, []).append(a.name)
            for server, names in by_server.items():
                if len(names) > len(nodes):
                    raise KubernetesTargetError(
                        f"cluster {c.name} ({self.clusters[c.name].context}) has "
                        f"{len(nodes)} Ready node(s) but {len(names)} agents of {server} must "
                        f"each have a node of their own ({', '.join(names)}): k8s_psat names "
                        "an agent by its node, so two on one node would evict each other"
                    )
                for node, agent in zip(nodes, names, strict=False):
                    a = self.topology.agent(agent)
                    sel = agent_node_selector(self.topology, a) or {}
                    out.setdefault(c.name, {}).setdefault(node, {}).update(sel)
        return out

    def check(self) -> dict[str, dict[str, dict[str, str]]]:
        """Everything `up` can find wrong before it changes anything (permissions, foreign
        namespaces, taken NodePorts, too few nodes); returns the node placement."""
        if self._placement is None:
            preflight(self)
            self._placement = self.node_placement()
        return self._placement

    # ---- plan --------------------------------------------------------------------------

    def plan(self) -> DeploymentPlan:
        changes: list[Change] = []
        notes: list[str] = []
        unchanged = 0
        for cluster, _, o in self.rendered():
            conn = self.clusters[cluster]
            ref = objects.ObjectRef.of(o)
            name = f"{cluster}/{_ref_name(ref)}"
            live = objects.get_live(conn, ref)
            if live is None:
                changes.append(Change("create", ref.kind, name))
                continue
            try:
                applied = objects.apply(conn, o, dry_run=True)
            except KubernetesTargetError as err:
                notes.append(str(err))
                continue
            fields = objects.changed_fields(live, applied)
            if fields:
                changes.append(Change("update", ref.kind, name, fields=tuple(fields)))
            else:
                unchanged += 1
        for cluster, ref in self._stale():
            changes.append(Change("delete", ref.kind, f"{cluster}/{_ref_name(ref)}"))
        changes += self._federation_changes(notes)
        changes += self._entry_changes(notes)
        return DeploymentPlan(self.name, "kubernetes", tuple(changes), tuple(notes), unchanged)

    def _stale(self) -> list[tuple[str, objects.ObjectRef]]:
        """Objects with our labels that the topology no longer has. Objects another object
        owns (a StatefulSet's volume claims) go with their owner and are not listed."""
        desired = {(c, objects.ObjectRef.of(o)) for c, _, o in self.rendered()}
        out = []
        for cluster, conn in self.clusters.items():
            for live in objects.list_ours(conn, self.name):
                ref = objects.ObjectRef.of(live)
                owned = (live.get("metadata") or {}).get("owner_references") or (
                    live.get("metadata") or {}
                ).get("ownerReferences")
                if owned or _cluster_label(live) != cluster or (cluster, ref) in desired:
                    continue
                out.append((cluster, ref))
        return out

    def _servers_running(self) -> list[str]:
        return [s.name for s in self.topology.servers if self.server_health(s.name)[1]]

    def _federation_changes(self, notes: list[str]) -> list[Change]:
        out = []
        running = set(self._servers_running())
        for fed in self.topology.federations:
            remote = next(iter(self.topology.servers_of(fed.trust_domain)), None)
            if remote is None or not {fed.server, remote.name} <= running:
                continue
            name = f"{fed.server} -> {fed.trust_domain}"
            try:
                with self.server(fed.server) as c:
                    c.get_federated_bundle(fed.trust_domain, timeout=10)
            except NotFoundError:
                out.append(Change("set", "federated-bundle", name, "bootstrap from the API"))
            except Exception as err:
                notes.append(f"{fed.server}: cannot read federated bundles: {err}")
        return out

    def _entry_changes(self, notes: list[str]) -> list[Change]:
        if self.topology.kubernetes.registration != "spire-api":
            return []  # the controller manager's resources are objects of the plan
        out = []
        for s in self._servers_running():
            try:
                plan = self.entry_plan(s)
            except Exception as err:
                notes.append(f"{s}: cannot read entries: {err}")
                continue
            out += [
                Change(c.action, "entry", str(c.entry.spiffe_id), f"on {s}",
                       tuple(sorted(f.value for f in c.fields)))
                for c in plan.changes
            ]  # fmt: skip
        return out

    # ---- up ----------------------------------------------------------------------------

    def up(
        self, report: StepReporter = no_report, plan: DeploymentPlan | None = None
    ) -> DeploymentPlan:
        t = self.topology
        with report("check clusters (contexts, permissions, namespaces, NodePorts)"):
            placement = self.check()
        plan = plan if plan is not None else self.plan()
        save(self.state_dir, self.written_topology, self.settings)
        self._writing = True
        timeout = self.settings.timeout
        # A nested server gets its CA through its parent's agent, with an entry that the
        # registrations stage makes: it (and its agents) can only be ready after that.
        nested = {s.name for s in t.servers if isinstance(s.upstream_authority,
                                                          SpireUpstreamAuthority)}  # fmt: skip
        deferred: list[tuple[str, objects.ObjectRef]] = []
        for stage in _ORDER:
            if stage == "federation":
                with report("bootstrap federation bundles"):
                    self._bootstrap_federation()
                with report("label nodes for agents"):
                    self._label_nodes(placement)
                with report("join tokens"):
                    self._mint_join_tokens()
                continue
            # rendered again per stage: secrets and join tokens made by earlier stages
            batch = [(c, o) for c, s, o in self.rendered() if s == stage]
            spire_api = stage == "07-" and t.kubernetes.registration == "spire-api"
            if not batch and not spire_api:
                continue
            with report(_STAGE_NAMES.get(stage, stage)):
                for cluster, o in batch:
                    objects.apply(self.clusters[cluster], o)
                if stage == "01-":
                    for cluster, conn in self.clusters.items():
                        names = [o["metadata"]["name"] for c, o in batch if c == cluster]
                        if names:
                            wait_crds_established(conn, names, min(timeout, 60))
                if spire_api:
                    self._register_entries()
                waits: dict[str, list[objects.ObjectRef]] = {}
                for cluster, o in batch:
                    if o["kind"] not in ROLLOUT_KINDS:
                        continue
                    ref = objects.ObjectRef.of(o)
                    if _belongs_to(t, o) & nested:
                        deferred.append((cluster, ref))
                    else:
                        waits.setdefault(cluster, []).append(ref)
                for cluster, refs in waits.items():
                    wait_rollouts(self.clusters[cluster], refs, timeout)
            if stage == "07-" and deferred:
                with report("nested SPIRE servers and their agents (until ready)"):
                    for cluster in self.clusters:
                        refs = [r for c, r in deferred if c == cluster]
                        if refs:
                            wait_rollouts(self.clusters[cluster], refs, timeout)
                deferred = []
        stale = self._stale()
        if stale:
            with report("delete what the topology no longer has"):
                for cluster in self.clusters:
                    refs = [r for c, r in stale if c == cluster]
                    objects.delete(self.clusters[cluster], refs)
                    objects.wait_gone(self.clusters[cluster], refs, timeout)
        return plan

    def _bootstrap_federation(self) -> None:
        """Each federating server gets the other's bundle from the Server API, before any
        entry that federates is registered (SPIRE refuses those without the bundle)."""
        t = self.topology
        for fed in t.federations:
            remote = next(iter(t.servers_of(fed.trust_domain)), None)
            if remote is None:
                continue
            with self.server(remote.name) as rc:
                bundle: Bundle = rc.get_bundle(timeout=15)
            with self.server(fed.server) as oc:
                try:
                    oc.get_federated_bundle(fed.trust_domain, timeout=15)
                    continue  # already there; the relationship keeps it current
                except NotFoundError:
                    pass
                oc.set_federated_bundles([bundle], timeout=15).raise_for_errors()
            if t.kubernetes.registration == "spire-api":
                self._federation_relationship(fed, remote)

    def _federation_relationship(self, fed: Any, remote: Any) -> None:
        from spire_fabric.server import FederationRelationship, HttpsSpiffeProfile, HttpsWebProfile
        from spire_fabric.topology import bundle_endpoint_url, endpoint_spiffe_id

        url = bundle_endpoint_url(self.topology, fed, "kubernetes")
        profile: Any = (
            HttpsSpiffeProfile(endpoint_spiffe_id=SpiffeId.parse(endpoint_spiffe_id(fed)))
            if fed.profile == "https_spiffe" else HttpsWebProfile()
        )  # fmt: skip
        with self.server(fed.server) as oc:
            try:
                oc.get_federation_relationship(fed.trust_domain)
            except NotFoundError:
                oc.create_federation_relationships(
                    [FederationRelationship(fed.trust_domain, url, profile)]
                ).raise_for_errors()

    def _label_nodes(self, placement: dict[str, dict[str, dict[str, str]]]) -> None:
        for cluster, nodes in placement.items():
            conn = self.clusters[cluster]
            for node, labels in nodes.items():
                body = {"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": node, "labels": labels}}  # fmt: skip
                _apply_as(conn, body, PLACEMENT_MANAGER)

    def _unlabel_nodes(self) -> None:
        """Applying an empty object as the placement manager drops every label it set."""
        for conn in self.clusters.values():
            for node, _ in node_addresses(conn):
                live = conn.core.read_node(node)
                managers = {m.manager for m in live.metadata.managed_fields or []}
                if PLACEMENT_MANAGER in managers:
                    _apply_as(conn, {"apiVersion": "v1", "kind": "Node",
                                     "metadata": {"name": node}}, PLACEMENT_MANAGER)  # fmt: skip

    def _mint_join_tokens(self) -> None:
        """join_token agents on Kubernetes (the crd-free preset): one token each, kept in
        a Secret the agent reads, a new one only when there is none or it is spent.

        A token attests once. An agent pod replaced after attesting lost its SVID with its
        emptyDir and cannot attest again with the spent token (it crash-loops), so `up`
        heals it: a new token under the same alias (the entries hang on the alias), the
        old agent evicted, the agent's pods replaced to read the new Secret."""
        for a in self.topology.agents:
            if a.kubernetes is None or agent_node_attestor(a, "kubernetes") != "join_token":
                continue
            old = self._join_token(a.name)
            td = self.topology.server(a.server).trust_domain
            if old is not None and (
                self.agent_healthy(a.name) or not self._spent(a.server, td, old)
            ):
                continue  # attested, or its first pod is still coming up with the token
            with self.server(a.server) as client:
                token = client.create_join_token(ttl=3600, agent_id=agent_alias_id(td, a.name))
                if old is not None:
                    with contextlib.suppress(NotFoundError):
                        client.delete_agent(join_token_agent_id(td, old))
            conn = self.clusters[a.kubernetes.cluster]
            objects.apply(conn, self._token_secret(a.name, token.value))
            if old is not None:
                selector = label_selector(selector_labels(a.name, "agent"))
                for pod in conn.core.list_namespaced_pod(
                    a.kubernetes.namespace, label_selector=selector
                ).items:
                    with contextlib.suppress(ApiException):
                        conn.core.delete_namespaced_pod(pod.metadata.name, a.kubernetes.namespace)

    def _spent(self, server: str, td: Any, token: str) -> bool:
        """Whether an agent attested with that token (SPIRE deletes a token when used)."""
        want = str(join_token_agent_id(td, token))
        with self.server(server) as client:
            return any(str(x.id) == want for x in client.list_agents(timeout=10))

    def _register_entries(self) -> None:
        for s in self.topology.servers:
            desired = self.desired_entries(s.name)
            with self.server(s.name) as client:
                result = apply_entries(client, desired, owner=self.entry_owner)
            try:
                result.raise_for_errors()
            except Exception as err:
                raise KubernetesTargetError(f"registering entries on {s.name}: {err}") from err

    # ---- status and down ---------------------------------------------------------------

    def status(self) -> list[ComponentHealth]:
        from spire_fabric.runtime.kubernetes._status import status_rows

        return status_rows(self)

    def _shared_crds(self, conn: ClusterApi) -> list[Obj]:
        """Our CRDs that another topology of ours re-applied (and so re-labelled) since we
        did: still ours to remove when nothing else uses them."""
        from spire_fabric.render.kubernetes._common import LABEL_MANAGED_BY, LABEL_TOPOLOGY
        from spire_fabric.render.kubernetes._crds import CRDS, GROUP

        if self.topology.kubernetes.registration != "controller-manager":
            return []
        found = []
        for plural, _, _ in CRDS.values():
            ref = objects.ObjectRef(
                "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", f"{plural}.{GROUP}"
            )
            live = objects.get_live(conn, ref)
            labels = ((live or {}).get("metadata") or {}).get("labels") or {}
            if live is not None and labels.get(LABEL_MANAGED_BY) == "spire-fabric" \
                    and labels.get(LABEL_TOPOLOGY) != self.name:  # fmt: skip
                found.append({**live, "apiVersion": ref.api_version, "kind": ref.kind})
        return found

    def down(self, purge: bool = False) -> list[int]:
        """Delete what we applied. A CRD is shared by every controller manager of its
        cluster: one that still has custom resources we did not apply (another topology's,
        a user's) is kept, and said so in :attr:`kept`."""
        deleted: dict[str, list[objects.ObjectRef]] = {}
        self.kept = []
        for cluster, conn in self.clusters.items():
            ours = []
            mine = [o for o in objects.list_ours(conn, self.name) if _cluster_label(o) == cluster]
            for o in mine + self._shared_crds(conn):
                if o["kind"] == "CustomResourceDefinition":
                    others = objects.foreign_custom_resources(conn, o, self.name)
                    if others:
                        self.kept.append(
                            f"CRD {o['metadata']['name']} in {cluster}: still used by "
                            + ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
                        )
                        continue
                ours.append(objects.ObjectRef.of(o))
            order = {k: i for i, (_, k) in enumerate(objects.OWNED_KINDS)}
            ours.sort(key=lambda r: order.get(r.kind, 0))
            namespaced = [r for r in ours if r.kind != "Namespace"]
            deleted[cluster] = objects.delete(conn, namespaced)
        for cluster, conn in self.clusters.items():
            objects.wait_gone(conn, deleted[cluster], self.settings.timeout)
        for cluster, conn in self.clusters.items():
            namespaces = [
                objects.ObjectRef.of(o)
                for o in objects.list_ours(conn, self.name)
                if o["kind"] == "Namespace" and _cluster_label(o) == cluster
            ]
            deleted[cluster] = objects.delete(conn, namespaces)
        for cluster, conn in self.clusters.items():
            objects.wait_gone(conn, deleted[cluster], self.settings.timeout)
        self._unlabel_nodes()
        self.close()
        if purge and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        return []


_STAGE_NAMES = {
    "00-": "namespaces",
    "01-": "CRDs (until Established)",
    "02-": "RBAC and service accounts",
    "secrets": "secrets (database passwords, intermediate CAs, join tokens)",
    "03-": "MySQL (until ready)",
    "04-": "SPIRE servers (until ready)",
    "05-": "SPIRE agents (until ready)",
    "07-": "registrations",
    "06-": "workloads (until ready)",
}


def _labels(topology: Topology, cluster: str, app: str, component: str) -> dict[str, str]:
    from spire_fabric.render.kubernetes._common import meta

    return dict(meta(topology, cluster, app, app=app, component=component)["labels"])


def _cluster_label(o: Obj) -> str:
    from spire_fabric.render.kubernetes import LABEL_CLUSTER

    return str(((o.get("metadata") or {}).get("labels") or {}).get(LABEL_CLUSTER, ""))


def _ref_name(ref: objects.ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name


def _apply_as(conn: ClusterApi, body: Obj, manager: str) -> None:
    res = objects.resource(conn, body["apiVersion"], body["kind"])
    try:
        res.server_side_apply(body=body, name=body["metadata"]["name"],
                              field_manager=manager, force_conflicts=True)  # fmt: skip
    except ApiException as err:
        raise KubernetesTargetError(
            f"cannot label node {body['metadata']['name']} in {conn.where()}: "
            f"{api_error_message(err)}"
        ) from err


def _belongs_to(topology: Topology, o: Obj) -> set[str]:
    """The servers a rollout object is (a server's StatefulSet) or serves (an agent's
    DaemonSet), by its app label."""
    app = str(((o.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/name", ""))
    out = {s.name for s in topology.servers if s.name == app}
    out |= {a.server for a in topology.agents if a.name == app}
    return out
