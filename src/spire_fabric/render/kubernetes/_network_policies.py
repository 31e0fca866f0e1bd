"""NetworkPolicies: each namespace we create denies all ingress, and each port a component
serves is opened to exactly the peers the topology says connect to it.

Who may connect, and why (docs/kubernetes-target.md has the table):

- a server's API port: the pods of its agents and of the servers nested under it (a child
  server mints its CA through its parent's API), each by namespace *and* pod labels. When
  one of them lives outside the server's cluster (or outside Kubernetes) it can only come
  through the API NodePort, whose source address is any node's or any host's, so the port
  is then open to all. The spire-controller-manager is a container of the server's pod on
  the API's unix socket: it needs no rule.
- a server's federation bundle endpoint: anyone. Peers in other clusters arrive through
  its NodePort with a node's or a host's address, and the bundle is public data.
- MySQL (3306): the pods of the server whose datastore it is.
- a workload's service port: the workloads that call it (:func:`workload_callers`, the
  run descriptions naming its ``{url:NAME}``); anyone when it has a NodePort, which exists
  for clients outside the cluster.
- telemetry ports (servers, agents), workloads' metrics ports and sidecars' status ports
  (ghostunnel's and the helper's metrics): the Prometheus pod of their cluster alone
  (``monitoring:``; no one without it). Health ports (and the controller manager's):
  nobody. The kubelet's probes come from the pod's own node as root, which the enforcer of
  the test clusters (kube-network-policies) accepts before any policy (its ``meta skuid 0
  accept`` rule), as common implementations allow the node; `status` and `verify` read them through
  a port-forward, which enters the pod's own network namespace and no policy sees.
- Alertmanager: its cluster's Prometheus. A Prometheus federated by the monitoring
  cluster's: anyone, since that one comes through its NodePort with a node's address
  (read-only queries of metrics); the monitoring cluster's Prometheus: nobody (read through
  a port-forward).
- agents, CSI drivers, installer identity probe pods and the in-pod relay serve nothing
  over the network (the Workload API is a unix socket): the default deny is all they get.

Egress is not restricted: every pod needs DNS and most the API server (whose address is
the cluster's, not a pod's), servers fetch federated bundles from peers anywhere and agents
reach their server through a NodePort from other clusters. An egress allow-list would have
to name node and host addresses the topology does not know, and would fence in nothing a
deny on the receiving side does not already stop.

The policies are applied with the namespaces, before any pod exists, so no pod of ours
ever runs unfenced.
"""

from __future__ import annotations

from spire_fabric.render.kubernetes._common import Obj, meta, obj, selector_labels
from spire_fabric.render.kubernetes._monitoring import (
    ALERTMANAGER,
    ALERTMANAGER_PORT,
    PROMETHEUS,
    PROMETHEUS_PORT,
)
from spire_fabric.render.kubernetes._monitoring import COMPONENT as MONITORING
from spire_fabric.render.kubernetes._mysql import PORT as MYSQL_PORT
from spire_fabric.render.kubernetes._mysql import mysql_instance
from spire_fabric.render.kubernetes._workloads import scraped_metrics_port
from spire_fabric.topology import (
    MONITORING_NAMESPACE,
    Agent,
    Server,
    SpireUpstreamAuthority,
    Topology,
    Workload,
    monitoring_cluster,
    workload_callers,
)

API = "networking.k8s.io/v1"
# set by the API server on every namespace (Kubernetes >= 1.22): selects one by name
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_DENY = "default-deny-ingress"


def render_network_policies(topology: Topology, cluster: str) -> list[Obj]:
    """The default deny of each namespace of ``cluster``, then one allow policy per
    component that serves a peer: servers, their MySQL, called or exposed workloads."""
    out = [_default_deny(topology, cluster, ns) for ns in topology.cluster(cluster).namespaces]
    for s in topology.servers:
        if s.kubernetes is not None and s.kubernetes.cluster == cluster:
            out.append(_server_policy(topology, s))
            if mysql_instance(s) is not None:
                out.append(_mysql_policy(topology, s))
    for w in topology.workloads:
        policy = _workload_policy(topology, w, cluster)
        if policy is not None:
            out.append(policy)
    if topology.monitoring is not None:
        for a in topology.agents:
            if a.kubernetes is not None and a.kubernetes.cluster == cluster:
                policy = _agent_policy(topology, a)
                if policy is not None:
                    out.append(policy)
        out += _monitoring_policies(topology, cluster)
    return out


def _scrapers(topology: Topology) -> list[Obj]:
    """The pods that may read telemetry and metrics ports: the Prometheus of the cluster
    (empty without ``monitoring:``, so the port gets no rule at all)."""
    if topology.monitoring is None:
        return []
    return [_peer(MONITORING_NAMESPACE, PROMETHEUS, MONITORING)]


def _agent_policy(topology: Topology, agent: Agent) -> Obj | None:
    k = agent.kubernetes
    assert k is not None
    if agent.telemetry_port is None:
        return None
    return _policy(topology, k.cluster, f"agent-{agent.name}", k.namespace, agent.name, "agent",
                   [_rule(agent.telemetry_port, _scrapers(topology))])  # fmt: skip


def _monitoring_policies(topology: Topology, cluster: str) -> list[Obj]:
    if cluster == monitoring_cluster(topology):
        return [_policy(topology, cluster, f"{MONITORING}-{ALERTMANAGER}", MONITORING_NAMESPACE,
                        ALERTMANAGER, MONITORING,
                        [_rule(ALERTMANAGER_PORT, _scrapers(topology))])]  # fmt: skip
    return [_policy(topology, cluster, f"{MONITORING}-{PROMETHEUS}", MONITORING_NAMESPACE,
                    PROMETHEUS, MONITORING, [_rule(PROMETHEUS_PORT, None)])]  # fmt: skip


def _peer(namespace: str, app: str, component: str) -> Obj:
    """Pods of one component in one namespace (both selectors in one peer: AND)."""
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
        "podSelector": {"matchLabels": selector_labels(app, component)},
    }


def _rule(port: int, peers: list[Obj] | None) -> Obj:
    """One ingress rule for a TCP port; ``peers`` None means from anywhere."""
    rule: Obj = {"ports": [{"protocol": "TCP", "port": port}]}
    if peers is not None:
        rule["from"] = peers
    return rule


def _policy(topology: Topology, cluster: str, name: str, namespace: str, app: str,
            component: str, ingress: list[Obj]) -> Obj:  # fmt: skip
    return obj(
        API,
        "NetworkPolicy",
        meta(topology, cluster, name, namespace, app=app, component="network-policy"),
        spec={
            "podSelector": {"matchLabels": selector_labels(app, component)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    )


def _default_deny(topology: Topology, cluster: str, namespace: str) -> Obj:
    """Every pod of the namespace, no ingress rule: nothing comes in that another policy
    does not allow (NetworkPolicies add up)."""
    return obj(
        API,
        "NetworkPolicy",
        meta(topology, cluster, DEFAULT_DENY, namespace, component="network-policy"),
        spec={"podSelector": {}, "policyTypes": ["Ingress"]},
    )


def _api_clients(topology: Topology, server: Server) -> list[Obj] | None:
    """The server's agents and the servers nested under it; None (anyone) when one of them
    is not in the server's cluster and so comes through the API NodePort."""
    k = server.kubernetes
    assert k is not None
    peers: list[Obj] = []
    for a in topology.agents_of(server.name):
        if a.kubernetes is None or a.kubernetes.cluster != k.cluster:
            return None
        peers.append(_peer(a.kubernetes.namespace, a.name, "agent"))
    for child in topology.servers:
        ua = child.upstream_authority
        if isinstance(ua, SpireUpstreamAuthority) and ua.server == server.name:
            if child.kubernetes is None or child.kubernetes.cluster != k.cluster:
                return None
            peers.append(_peer(child.kubernetes.namespace, child.name, "server"))
    return peers


def _server_policy(topology: Topology, server: Server) -> Obj:
    k = server.kubernetes
    assert k is not None
    ingress = [_rule(server.ports.api, _api_clients(topology, server))]
    if server.bundle_endpoint is not None:
        ingress.append(_rule(server.ports.federation, None))
    if topology.monitoring is not None and server.ports.telemetry is not None:
        ingress.append(_rule(server.ports.telemetry, _scrapers(topology)))
    return _policy(topology, k.cluster, f"server-{server.name}", k.namespace, server.name,
                   "server", ingress)  # fmt: skip


def _mysql_policy(topology: Topology, server: Server) -> Obj:
    k = server.kubernetes
    inst = mysql_instance(server)
    assert k is not None and inst is not None
    ingress = [_rule(MYSQL_PORT, [_peer(k.namespace, server.name, "server")])]
    return _policy(topology, k.cluster, f"database-{inst.service}", k.namespace, inst.service,
                   "database", ingress)  # fmt: skip


def _workload_policy(topology: Topology, w: Workload, cluster: str) -> Obj | None:
    """None for a workload that serves no one here: not in ``cluster``, no Service (no
    port, or registered only), or no caller and no NodePort (the default deny covers it)."""
    k = w.kubernetes
    agent = topology.agent(w.agent)
    if k is None or agent.kubernetes is None or agent.kubernetes.cluster != cluster:
        return None
    if w.run is None and not k.command:
        return None
    ingress: list[Obj] = []
    metrics = scraped_metrics_port(topology, w)
    if metrics is not None:
        ingress.append(_rule(metrics, _scrapers(topology)))
    if topology.monitoring is not None:  # each sidecar's metrics, on its status port
        ingress += [_rule(sc.status_port, _scrapers(topology))
                    for sc in w.sidecars if sc.status_port is not None]  # fmt: skip
    if k.service_port is not None:
        peers: list[Obj] | None = None
        if k.node_port is None:
            peers = [
                _peer(c.kubernetes.namespace, c.name, "workload")
                for c in workload_callers(topology, w)
                if c.kubernetes is not None
                and topology.agent(c.agent).kubernetes is not None
                and topology.agent(c.agent).kubernetes.cluster == cluster  # type: ignore[union-attr]
            ]
        if peers is None or peers:
            ingress.insert(0, _rule(k.service_port, peers))
    if not ingress:
        return None
    return _policy(topology, cluster, f"workload-{w.name}", k.namespace, w.name, "workload",
                   ingress)  # fmt: skip
