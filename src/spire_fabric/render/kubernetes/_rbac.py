"""ServiceAccounts, Roles and ClusterRoles: exactly what each SPIRE plugin asks for.

Sources (SPIRE 1.13.3 docs and code, spire-controller-manager 0.6.3 demo RBAC):
- server NodeAttestor "k8s_psat": tokenreviews create; pods and nodes get (cluster-wide,
  because agents may run in any namespace and nodes are cluster-scoped).
- agent WorkloadAttestor "k8s": it only calls the kubelet's ``/pods`` endpoint
  (pkg/agent/plugin/workloadattestor/k8s/k8s.go). A kubelet of Kubernetes >= 1.33
  (KubeletFineGrainedAuthz) authorizes that as ``nodes/pods`` get and falls back to
  ``nodes/proxy``; older ones ask for ``nodes/proxy`` only, which also opens exec, logs and
  every other kubelet endpoint, so it is an opt-in (``kubelet_access``). The agent never
  calls the API server, so nothing else.
- server BundlePublisher "k8s_configmap": get and patch of its one ConfigMap in each agent
  namespace it publishes to (doc/plugin_server_bundlepublisher_k8s_configmap.md: it
  server-side applies; we render the ConfigMap, so no create). A Role in the agents'
  namespace bound to the server's ServiceAccount in its own: namespace-scoped still.
- spire-controller-manager: read namespaces, nodes, pods, endpoints; read its CRDs and
  write their status and finalizers. Webhooks are off (see _controller_manager.py), so no
  ValidatingWebhookConfiguration rights. A server with replicas runs one sidecar per
  replica and they elect a leader (controller-runtime's LeaseLock: get, create, update of
  one Lease in the server's namespace; events for the election's record, as
  helm-charts-hardened grants).
"""

from __future__ import annotations

from spire_fabric.render.kubernetes._common import (
    Obj,
    k8s_agents,
    k8s_servers,
    meta,
    obj,
    service_account,
)
from spire_fabric.render.kubernetes._controller_manager import controller_manager_lease_name
from spire_fabric.topology import (
    K8sPsatAttestor,
    Server,
    Topology,
    agent_workload_attestors,
    bundle_publisher_namespaces,
    controller_manager_enabled,
    server_replicas,
)

RBAC = "rbac.authorization.k8s.io/v1"
CRD_RESOURCES = ("clusterfederatedtrustdomains", "clusterspiffeids", "clusterstaticentries")


def _rule(groups: list[str], resources: list[str], verbs: list[str], **extra: list[str]) -> Obj:
    rule: Obj = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    rule.update(extra)
    return rule


def _binding(
    topology: Topology,
    cluster: str,
    kind: str,
    name: str,
    namespace: str | None,
    subjects: list[tuple[str, str]],
) -> Obj:
    return obj(
        RBAC,
        f"{kind}Binding",
        meta(topology, cluster, name, namespace, component="rbac"),
        subjects=[{"kind": "ServiceAccount", "name": sa, "namespace": ns} for ns, sa in subjects],
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
    )


def _role(
    topology: Topology,
    cluster: str,
    kind: str,
    name: str,
    namespace: str | None,
    rules: list[Obj],
    subjects: list[tuple[str, str]],
) -> list[Obj]:
    role = obj(RBAC, kind, meta(topology, cluster, name, namespace, component="rbac"), rules=rules)
    return [role, _binding(topology, cluster, kind, name, namespace, subjects)]


def render_service_accounts(topology: Topology, cluster: str) -> list[Obj]:
    """One per (namespace, name): several agents may share one service account."""
    seen: dict[tuple[str, str], None] = {}
    for s in k8s_servers(topology):
        assert s.kubernetes is not None
        if s.kubernetes.cluster == cluster:
            seen[(s.kubernetes.namespace, s.kubernetes.service_account)] = None
    for a in k8s_agents(topology):
        assert a.kubernetes is not None
        if a.kubernetes.cluster == cluster:
            seen[(a.kubernetes.namespace, a.kubernetes.service_account)] = None
    return [service_account(topology, cluster, sa, ns) for ns, sa in seen]


def _server_rbac(topology: Topology, server: Server) -> list[Obj]:
    k = server.kubernetes
    assert k is not None
    me = [(k.namespace, k.service_account)]
    out: list[Obj] = []
    if any(isinstance(na, K8sPsatAttestor) for na in server.node_attestors):
        out += _role(
            topology,
            k.cluster,
            "ClusterRole",
            f"spire-fabric-{server.name}-node-attestor",
            None,
            [
                _rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
                _rule([""], ["nodes", "pods"], ["get"]),
            ],
            me,
        )
    for ns in bundle_publisher_namespaces(topology, server):
        out += _role(
            topology,
            k.cluster,
            "Role",
            f"spire-fabric-{server.name}-bundle-publisher",
            ns,
            [_rule([""], ["configmaps"], ["get", "patch"], resourceNames=[k.bundle_configmap])],
            me,
        )
    if controller_manager_enabled(topology, server):
        out += _role(
            topology,
            k.cluster,
            "ClusterRole",
            f"spire-fabric-{server.name}-controller-manager",
            None,
            [
                _rule([""], ["endpoints", "namespaces", "nodes", "pods"], ["get", "list", "watch"]),
                _rule(["spire.spiffe.io"], list(CRD_RESOURCES), ["get", "list", "watch"]),
                _rule(
                    ["spire.spiffe.io"],
                    [f"{r}/status" for r in CRD_RESOURCES],
                    ["get", "patch", "update"],
                ),
                _rule(["spire.spiffe.io"], [f"{r}/finalizers" for r in CRD_RESOURCES], ["update"]),
            ],
            me,
        )
        if server_replicas(server, "kubernetes") > 1:
            lease = controller_manager_lease_name(server)
            out += _role(
                topology,
                k.cluster,
                "Role",
                f"spire-fabric-{server.name}-controller-manager-leader",
                k.namespace,
                [
                    # create cannot be limited to a name (the object does not exist yet)
                    _rule(["coordination.k8s.io"], ["leases"], ["create"]),
                    _rule(
                        ["coordination.k8s.io"],
                        ["leases"],
                        ["get", "update"],
                        resourceNames=[lease],
                    ),
                    _rule([""], ["events"], ["create", "patch"]),
                ],
                me,
            )
    return out


def _agent_rbac(topology: Topology, cluster: str) -> list[Obj]:
    """One ClusterRole per agent service account that runs the k8s workload attestor:
    ``nodes/pods`` get (the kubelet's /pods, all the attestor calls), or ``nodes/proxy`` get
    when an agent of that account opted in with ``kubelet_access: nodes/proxy``."""
    subjects: dict[tuple[str, str], str] = {}
    for a in k8s_agents(topology):
        k = a.kubernetes
        assert k is not None
        if k.cluster != cluster or "k8s" not in agent_workload_attestors(topology, a, "kubernetes"):
            continue
        key = (k.namespace, k.service_account)
        if subjects.get(key) != "nodes/proxy":
            subjects[key] = k.kubelet_access
    out: list[Obj] = []
    for (ns, sa), resource in subjects.items():
        out += _role(
            topology,
            cluster,
            "ClusterRole",
            f"spire-fabric-{ns}-{sa}-workload-attestor",
            None,
            [_rule([""], [resource], ["get"])],
            [(ns, sa)],
        )
    return out


def render_rbac(topology: Topology, cluster: str) -> list[Obj]:
    """Roles and bindings of one cluster. A namespace-scoped topology that would still need
    a ClusterRole is refused rather than silently given one."""
    out: list[Obj] = []
    for s in k8s_servers(topology):
        assert s.kubernetes is not None
        if s.kubernetes.cluster == cluster:
            out += _server_rbac(topology, s)
    out += _agent_rbac(topology, cluster)
    if topology.kubernetes.rbac == "namespace":
        cluster_scoped = sorted(o["metadata"]["name"] for o in out if o["kind"] == "ClusterRole")
        if cluster_scoped:
            raise ValueError(
                f"kubernetes.rbac is 'namespace' but the topology needs ClusterRoles: "
                f"{', '.join(cluster_scoped)}"
            )
    return out
