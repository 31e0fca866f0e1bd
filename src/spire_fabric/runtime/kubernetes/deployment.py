"""A topology made real on Kubernetes: the Kubernetes :class:`Deployment`.

This class only composes: connections and access to the parts (:mod:`._access`), plan and
up (:mod:`._installer`, a provider of the installer core), down (:mod:`._teardown`),
status (:mod:`._status`) and a workload's identity fetched inside the cluster
(:mod:`._identity`).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from kubernetes.client.exceptions import ApiException

import spire_fabric.runtime.kubernetes._objects as objects
from spire_fabric.entries import EntryChange, EntryPlan, plan_entries
from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid, SpiffeId, join_token_agent_id
from spire_fabric.render.kubernetes import (
    ALERTMANAGER,
    ALERTMANAGER_PORT,
    PROMETHEUS,
    PROMETHEUS_PORT,
    SigningCaPem,
    selector_labels,
    upstream_ca_secret,
    workload_files_secret,
    workload_socket_address,
)
from spire_fabric.render.kubernetes import MONITORING_COMPONENT as MONITORING
from spire_fabric.runtime.ca_hierarchy import SigningCa
from spire_fabric.runtime.core import CaStore, entry_owner, files_workload, registration_entries
from spire_fabric.runtime.deployment import (
    ComponentHealth,
    DeploymentPlan,
    ServerReplica,
    StepReporter,
    WorkloadAddress,
    WorkloadViews,
    no_report,
)
from spire_fabric.runtime.kubernetes._access import ClusterAccess
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, label_selector, resolve_contexts
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._identity import (
    WorkloadIdentity,
    delete_probe_pod,
    needs_probe_pod,
    start_probe_pod,
)
from spire_fabric.runtime.kubernetes._installer import KubernetesInstaller
from spire_fabric.runtime.kubernetes._pods import replace_pod
from spire_fabric.runtime.kubernetes._registrations import controller_manager_entries, settled_pod
from spire_fabric.runtime.kubernetes._sidecars import (
    PeerProbe,
    plain_port_from_peer,
    sidecar_facts,
)
from spire_fabric.runtime.kubernetes._state import KubernetesSettings, default_state_dir, load
from spire_fabric.runtime.kubernetes._status import status_rows
from spire_fabric.runtime.kubernetes._teardown import Teardown
from spire_fabric.runtime.kubernetes._waits import rollout_done
from spire_fabric.server import Entry, ServerInfo, SpireServerClient
from spire_fabric.topology import (
    MONITORING_NAMESPACE,
    DiskUpstreamAuthority,
    Topology,
    agent_node_attestor,
    monitoring_cluster,
)
from spire_fabric.workload import X509Context

__all__ = ["KubernetesDeployment"]

# the field manager of workload files: `up` (as ``spire-fabric``) applies the Secret without
# data, so it never takes a file's content away
FILES_MANAGER = "spire-fabric-files"
# a replica's pod deleted, the StatefulSet's replacement scheduled, started and ready
# (its readiness: SPIRE's /ready, the CA able to sign)
REPLICA_RESTART_TIMEOUT = 300.0


def _pod_uids_of(e: Entry) -> frozenset[str]:
    """The pod UIDs an entry of the controller manager selects (``k8s:pod-uid:``)."""
    return frozenset(sel.value.removeprefix("pod-uid:") for sel in e.selectors
                     if sel.type == "k8s" and sel.value.startswith("pod-uid:"))  # fmt: skip


def _entry_key(e: Entry) -> tuple[str, str, frozenset[str]]:
    return str(e.spiffe_id), str(e.parent_id), _pod_uids_of(e)


class KubernetesDeployment:
    """One topology on one or more clusters. ``create`` for `up`, ``open`` afterwards."""

    target: Literal["kubernetes"] = "kubernetes"

    def __init__(self, topology: Topology, settings: KubernetesSettings, state_dir: Path) -> None:
        self.access = ClusterAccess(topology, settings, state_dir)
        self.installer = KubernetesInstaller(self, self.access)
        self.kept: list[str] = []  # what `down` left because others still use it
        # probe pods `up` started with the workloads, by workload: `verify` takes them
        self._probe_pods: dict[str, str] = {}

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

    # ---- what the access layer holds ---------------------------------------------------

    @property
    def written_topology(self) -> Topology:
        """The topology as the user wrote it (what the state directory records)."""
        return self.access.written_topology

    @property
    def settings(self) -> KubernetesSettings:
        return self.access.settings

    @property
    def state_dir(self) -> Path:
        return self.access.state_dir

    @property
    def clusters(self) -> dict[str, ClusterApi]:
        return self.access.clusters

    def close(self) -> None:
        try:
            for workload, pod in list(self._probe_pods.items()):  # not taken (--no-verify)
                self._probe_pods.pop(workload, None)
                conn = self.clusters[self.access.workload_cluster(workload)]
                delete_probe_pod(conn, self.topology.workload(workload), pod)
        finally:
            self.access.close()

    def __enter__(self) -> KubernetesDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the Deployment interface ------------------------------------------------------

    @property
    def name(self) -> str:
        return self.access.name

    @property
    def topology(self) -> Topology:
        return self.access.topology

    @property
    def entry_owner(self) -> str:
        return entry_owner(self.topology)

    def server(self, name: str) -> SpireServerClient:
        return self.access.server_access(name).client()

    def server_health(self, name: str) -> tuple[bool, bool]:
        return self.access.server_access(name).health()

    def server_replicas(self, name: str) -> tuple[ServerReplica, ...]:
        return self.access.server_access(name).replicas()

    def replica_server(self, name: str, replica: str) -> SpireServerClient:
        return self.access.replica_access(name, replica).client()

    def replica_server_svid(self, name: str, replica: str) -> tuple[x509.Certificate, ...]:
        return self.access.replica_access(name, replica).served_svid()

    def restart_replica(self, name: str, replica: str) -> None:
        s = self.topology.server(name)
        assert s.kubernetes is not None
        pods = [r.name for r in self.server_replicas(name)]
        if replica not in pods:
            raise KubernetesTargetError(f"{replica!r} is not a pod of server {name}; its "
                                        f"pods: {', '.join(pods) or 'none'}")  # fmt: skip
        replace_pod(self.clusters[s.kubernetes.cluster], s.kubernetes.namespace, replica,
                    REPLICA_RESTART_TIMEOUT)  # fmt: skip

    def server_info(self, name: str) -> ServerInfo:
        return self.access.server_access(name).server_info()

    def bundle_endpoint_url(self, name: str) -> str:
        s = self.topology.server(name)
        k = s.kubernetes
        assert k is not None
        if k.node_ports.federation is not None:
            node = self.topology.cluster(k.cluster).effective_node_address
            return f"https://{node}:{k.node_ports.federation}"
        pf = self.access.forward(f"federation:{name}", k.cluster, k.namespace,
                                 selector_labels(name, "server"), s.ports.federation)  # fmt: skip
        return f"https://{pf.address}"

    def agent_endpoint(self, name: str) -> str:
        """The Workload API address as the agent's workloads dial it: inside their pods."""
        return workload_socket_address(self.topology.agent(name))

    def agent_healthy(self, name: str) -> bool:
        a = self.topology.agent(name)
        assert a.kubernetes is not None
        live = objects.get_live(
            self.clusters[a.kubernetes.cluster],
            objects.ObjectRef("apps/v1", "DaemonSet", a.kubernetes.namespace, name),
        )
        return live is not None and rollout_done(live)[0]

    def agent_svid_chain(self, name: str) -> tuple[x509.Certificate, ...] | None:
        """None: the agent keeps its SVID in its pods' data directory, and the agent image
        has no shell to read it with."""
        self.topology.agent(name)  # an unknown agent is refused, as everywhere
        return None

    def agent_id(self, name: str) -> SpiffeId | None:
        a = self.topology.agent(name)
        k = a.kubernetes
        assert k is not None
        td = self.topology.server(a.server).trust_domain
        conn = self.clusters[k.cluster]
        if agent_node_attestor(a, "kubernetes") != "k8s_psat":
            self.installer.secret_values.adopt_live(self.topology, self.clusters)
            token = self.installer.secret_values.join_tokens.get(a.name)
            return join_token_agent_id(td, token) if token else None
        try:
            pods = conn.core.list_namespaced_pod(
                k.namespace, label_selector=label_selector(selector_labels(name, "agent"))
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
        cluster = self.access.workload_cluster(name)
        sid = SpiffeId.parse(w.spiffe_id)
        if k.node_port is not None:
            node = self.topology.cluster(cluster).effective_node_address
            return WorkloadAddress(name, node, k.node_port, sid)
        pf = self.access.forward(f"workload:{name}", cluster, k.namespace,
                                 selector_labels(name, "workload"), k.service_port)  # fmt: skip
        return WorkloadAddress(name, "127.0.0.1", pf.local_port, sid)

    def monitoring_urls(self) -> tuple[str, str] | None:
        """Port-forwards of our own to the monitoring cluster's Prometheus (the one that
        evaluates the rules and federates the others) and Alertmanager; None without
        ``monitoring:``."""
        if self.topology.monitoring is None:
            return None
        cluster = monitoring_cluster(self.topology)
        urls = []
        for app, port in ((PROMETHEUS, PROMETHEUS_PORT), (ALERTMANAGER, ALERTMANAGER_PORT)):
            pf = self.access.forward(f"monitoring:{app}", cluster, MONITORING_NAMESPACE,
                                     selector_labels(app, MONITORING), port)  # fmt: skip
            urls.append(f"http://{pf.address}")
        return urls[0], urls[1]

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
        pf = self.access.forward(f"telemetry:{component}", *where,
                                 selector_labels(component, role), port)  # fmt: skip
        return "127.0.0.1", pf.local_port

    def root_ca(self) -> x509.Certificate | None:
        ca = CaStore(self.ca_directory).root(self.topology)
        return ca.certificate if ca else None

    @property
    def ca_directory(self) -> Path:
        return self.state_dir / "ca"

    def place_signing_ca(self, server: str, ca: SigningCa) -> None:
        # the Secret `up` renders from the CA store's current generation, with ``ca``
        s = self.topology.server(server)
        if s.kubernetes is None or not isinstance(s.upstream_authority, DiskUpstreamAuthority):
            raise KubernetesTargetError(f"{server} reads no signing CA from a Secret")
        secret = upstream_ca_secret(self.topology, s, SigningCaPem(ca.chain, ca.key, ca.root))
        conn = self.clusters[s.kubernetes.cluster]
        objects.apply(conn, secret)
        _nudge_server_pods(conn, server, s.kubernetes.namespace, ca.chain)

    def desired_entries(self, server: str) -> list[Entry]:
        if self.topology.kubernetes.registration == "spire-api":
            return registration_entries(self.topology, server, "kubernetes")
        return controller_manager_entries(self.topology, self.clusters, server)

    def entry_plan(self, server: str) -> EntryPlan:
        """Desired entries against the server's; entries the controller manager made are
        matched by (SPIFFE ID, parent, pod UIDs), since it chooses their IDs itself. The pod
        UID is part of the key: two pods of one workload on one node (a pod and an identity
        probe, on the upstream cluster's single node) have the same SPIFFE ID and parent.
        An entry of a pod that is not settled (gone, being deleted, a probe) is the
        controller manager's to make or drop, and is left out on both sides."""
        desired = self.desired_entries(server)
        with self.server(server) as client:
            current = list(client.list_entries(timeout=10))
        if self.topology.kubernetes.registration == "spire-api":
            return plan_entries(current, desired, owner=self.entry_owner)
        prefix = f"{server}."
        settled = self._pod_uids(server)
        have = {_entry_key(e): e for e in current if e.id.startswith(prefix)
                and (not _pod_uids_of(e) or _pod_uids_of(e) & settled)}  # fmt: skip
        changes: list[EntryChange] = []
        unchanged: list[Entry] = []
        for e in desired:
            cur = have.pop(_entry_key(e), None)
            if cur is None:
                changes.append(EntryChange("create", e))
            elif cur.diff(e):
                changes.append(EntryChange("update", e, frozenset(cur.diff(e)), cur))
            else:
                unchanged.append(cur)
        changes += [EntryChange("delete", e) for e in have.values()]
        return EntryPlan(tuple(changes), tuple(unchanged))

    def _pod_uids(self, server: str) -> set[str]:
        """The UIDs of the settled pods (`settled_pod`) of the server's cluster."""
        k = self.topology.server(server).kubernetes
        assert k is not None
        pods = self.clusters[k.cluster].core.list_pod_for_all_namespaces().items
        return {str(p.metadata.uid) for p in pods if settled_pod(p)}

    def x509_context(self, workload: str) -> X509Context:
        return self._identity(workload).x509_context()

    def jwt_svid(self, workload: str, audience: str) -> JwtSvid:
        return self._identity(workload).jwt(audience)[0]

    def jwt_bundles(self, workload: str) -> BundleSet[JwtBundle]:
        return self._identity(workload).jwt_bundles()

    def workload_views(self, workload: str, audiences: Sequence[str] = ()) -> WorkloadViews:
        return self._identity(workload).views(audiences)

    def workload_file(self, workload: str, name: str) -> bytes | None:
        return self._files(workload, name).get(name)

    def put_workload_file(self, workload: str, name: str, data: bytes) -> None:
        files = self._files(workload, name)
        files[name] = data
        w = self.topology.workload(workload)
        conn = self.clusters[self.access.workload_cluster(workload)]
        objects.apply(conn, workload_files_secret(self.topology, w, files), manager=FILES_MANAGER)

    def _files(self, workload: str, name: str) -> dict[str, bytes]:
        w = files_workload(self.topology, workload, name)
        assert w.kubernetes is not None
        secret = workload_files_secret(self.topology, w)
        live = objects.get_live(self.clusters[self.access.workload_cluster(workload)],
                                objects.ObjectRef.of(secret))  # fmt: skip
        if live is None:
            raise KubernetesTargetError(
                f"no Secret {w.kubernetes.namespace}/{secret['metadata']['name']} of {workload}: "
                "run `up` first"
            )
        return {k: base64.b64decode(v) for k, v in ((live.get("data") or {}).items())}

    def sidecar_files(self, workload: str) -> dict[str, tuple[bytes, int]]:
        """The files a files-mode sidecar keeps for ``workload`` (name -> content, mode), as
        its app container reads them from the shared emptyDir: `verify` compares them with
        the agent's current SVID."""
        return sidecar_facts(self.clusters, self.topology, workload).files

    def plain_port_from_peer(self, workload: str, app_port: int) -> PeerProbe:
        """From a calling workload's pod: the sidecar's port and the app's plain port on
        ``workload``'s pod IP (`verify`: the plain one must not answer)."""
        return plain_port_from_peer(self.clusters, self.topology, workload, app_port)

    def _identity(self, workload: str) -> WorkloadIdentity:
        w = self.topology.workload(workload)
        conn = self.clusters[self.access.workload_cluster(workload)]
        return WorkloadIdentity(conn, self.topology, w, self._probe_pods.pop(workload, None))

    def start_identity_probes(self) -> None:
        """Start the probe pods of the registered-only workloads ahead of `verify` (`up`
        does, with the workloads): their entries then reach the agents while the
        workloads come up. Best effort: a pod that cannot be made now is made, or its
        error said, by `verify` itself."""
        for w in self.topology.workloads:
            if w.kubernetes is None or not needs_probe_pod(w) or w.name in self._probe_pods:
                continue
            conn = self.clusters[self.access.workload_cluster(w.name)]
            try:
                self._probe_pods[w.name] = start_probe_pod(conn, self.topology, w)
            except KubernetesTargetError:
                continue

    # ---- lifecycle ---------------------------------------------------------------------

    def check(self) -> None:
        self.installer.check()

    def rendered(self) -> list[tuple[str, str, dict[str, object]]]:
        """(cluster, stage file, object) of everything `up` applies, Secrets filled in."""
        return self.installer.rendered()

    def plan(self) -> DeploymentPlan:
        return self.installer.plan()

    def up(
        self, report: StepReporter = no_report, plan: DeploymentPlan | None = None
    ) -> DeploymentPlan:
        return self.installer.up(report, plan)

    def status(self, svids: bool = True) -> list[ComponentHealth]:
        return status_rows(self, svids)

    def down(self, purge: bool = False) -> list[str]:
        """Delete every object of ours (``cluster: Kind ns/name`` of each, returned). A CRD
        that custom resources we did not apply still use is kept, and said so in
        :attr:`kept`."""
        teardown = Teardown()
        teardown.run(self.topology, self.clusters, self.settings.timeout)
        self.kept = teardown.kept
        self.installer.secret_values.forget_join_tokens()
        self.close()
        if purge and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        return teardown.deleted


# What a server pod was last given by place_signing_ca (a digest of its chain).
SIGNING_CA_PLACED = "spire-fabric.io/signing-ca-placed"


def _nudge_server_pods(
    conn: ClusterApi, server: str, namespace: str, chain_pem: bytes
) -> None:
    """Annotate the server's pods with what was just placed. Why: the kubelet rewrites a
    Secret volume when it syncs the pod, which it does on its own once a minute (plus its
    Secret cache); a rotation then waits that out at every placement (30-50 s each was
    measured on the test clusters). An update of the pod's metadata makes the kubelet sync
    that pod at once, and a sync rewrites the pod's Secret volumes from the kubelet's
    watch of the Secret. Only the pods' own metadata changes: no restart, and the
    StatefulSet's template is untouched. Without permission to patch pods this is
    skipped: the placement still arrives, on the kubelet's own schedule."""
    digest = hashlib.sha256(chain_pem).hexdigest()[:16]
    try:
        pods = conn.core.list_namespaced_pod(
            namespace, label_selector=label_selector(selector_labels(server, "server"))
        ).items
        for pod in pods:
            conn.core.patch_namespaced_pod(
                pod.metadata.name, namespace,
                {"metadata": {"annotations": {SIGNING_CA_PLACED: digest}}},
            )  # fmt: skip
    except ApiException as err:
        if err.status not in (403, 404):
            raise

