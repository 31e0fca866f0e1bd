"""spire-controller-manager: its ControllerManagerConfig, its sidecar container, and the
custom resources that register the topology's workloads and federation.

Choices (spire-controller-manager 0.6.3, cmd/main.go):
- Sidecar in the server pod, talking to the server over the shared API socket, as the
  project's own demo deploys it.
- ``ENABLE_WEBHOOKS=false``: the validating webhook would need a cluster-scoped
  ValidatingWebhookConfiguration per server, a Service and the right to patch it; the CRD
  schemas already validate shape and our renderer produces the content.
- ``className`` = server name on the config and on every resource, so two servers in one
  cluster (``nested``) each reconcile only their own resources.
- ``entryIDPrefix`` = ``<server>.``: the controller manager then leaves alone the entries
  it did not create (the installer's, through the SPIRE API).
- Leader election on a Lease when the server has replicas: each replica's pod carries a
  sidecar that talks to its own replica's socket; the shared datastore makes every
  replica see the entries the leader writes.
"""

from __future__ import annotations

from posixpath import dirname

import yaml

from spire_fabric.identity import node_alias_id, spire_server_id
from spire_fabric.render._paths import RenderPaths
from spire_fabric.render.kubernetes._common import (
    LABEL_WORKLOAD,
    Obj,
    config_map,
    meta,
    obj,
    readiness_probe,
    restricted_container,
    selector_labels,
)
from spire_fabric.render.kubernetes._resources import resources
from spire_fabric.topology import (
    Agent,
    Server,
    Topology,
    Workload,
    bundle_endpoint_url,
    controller_manager_enabled,
    endpoint_spiffe_id,
    format_duration,
    server_replicas,
    workload_selectors,
)

API_VERSION = "spire.spiffe.io/v1alpha1"
CONFIG_DIR = "/etc/spire-controller-manager"
CONFIG_KEY = "controller-manager-config.yaml"
HEALTH_PORT = 8083
IGNORED_NAMESPACES = ("kube-system", "kube-public", "local-path-storage")
PATHS = RenderPaths.kubernetes()


def controller_manager_config_map_name(server: Server) -> str:
    return f"{server.name}-controller-manager-config"


def controller_manager_config(topology: Topology, server: Server) -> Obj:
    """The ControllerManagerConfig document (``api/v1alpha1`` of the controller manager)."""
    k = server.kubernetes
    assert k is not None
    return {
        "apiVersion": API_VERSION,
        "kind": "ControllerManagerConfig",
        "clusterName": k.cluster,  # must equal the k8s_psat cluster: it is in agent IDs
        "clusterDomain": "cluster.local",
        "trustDomain": str(server.trust_domain),
        "className": server.name,
        "entryIDPrefix": f"{server.name}.",
        "ignoreNamespaces": list(IGNORED_NAMESPACES),
        "spireServerSocketPath": PATHS.server_socket(server.name),
        "logLevel": "info",
        "health": {"healthProbeBindAddress": f"0.0.0.0:{HEALTH_PORT}"},
        "metrics": {"bindAddress": "0"},
        "leaderElection": _leader_election(server),
    }


def controller_manager_lease_name(server: Server) -> str:
    """The Lease the controller managers of ``server``'s replicas elect their leader on."""
    return f"{server.name}-controller-manager"


def _leader_election(server: Server) -> Obj:
    """One sidecar per server replica, and only one may reconcile: two writers would race
    each other's entry creates and deletes. With one replica there is nobody to elect."""
    k = server.kubernetes
    assert k is not None
    if server_replicas(server, "kubernetes") <= 1:
        return {"leaderElect": False}
    return {
        "leaderElect": True,
        "resourceLock": "leases",
        "resourceName": controller_manager_lease_name(server),
        "resourceNamespace": k.namespace,
    }


def controller_manager_config_map(topology: Topology, server: Server) -> Obj:
    k = server.kubernetes
    assert k is not None
    text = yaml.safe_dump(controller_manager_config(topology, server), sort_keys=False)
    return config_map(
        topology,
        k.cluster,
        controller_manager_config_map_name(server),
        k.namespace,
        {CONFIG_KEY: text},
        server.name,
    )


def controller_manager_container(topology: Topology, server: Server) -> Obj:
    probe = {"httpGet": {"path": "/healthz", "port": "healthz"}, "periodSeconds": 10}
    return {
        "name": "spire-controller-manager",
        "image": topology.kubernetes.images.controller_manager,
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--config={CONFIG_DIR}/{CONFIG_KEY}"],
        "env": [{"name": "ENABLE_WEBHOOKS", "value": "false"}],
        "ports": [{"name": "healthz", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "livenessProbe": probe,
        "readinessProbe": readiness_probe({"httpGet": {"path": "/readyz", "port": "healthz"}}),
        "resources": resources("spire-controller-manager"),
        "securityContext": restricted_container(),
        "volumeMounts": [
            {"name": "controller-manager-config", "mountPath": CONFIG_DIR, "readOnly": True},
            {
                "name": "server-socket",
                "mountPath": dirname(PATHS.server_socket(server.name)),
                "readOnly": True,
            },
        ],
    }


def controller_manager_volumes(server: Server) -> list[Obj]:
    return [
        {
            "name": "controller-manager-config",
            "configMap": {"name": controller_manager_config_map_name(server)},
        },
    ]


# --- custom resources -------------------------------------------------------------------


def k8s_selectable(selectors: tuple[str, ...]) -> bool:
    """A ClusterSPIFFEID can express the entry when its selectors are k8s ones naming one
    namespace: the controller manager adds ``k8s:ns`` and a pod UID itself."""
    namespaces = [s for s in selectors if s.startswith("k8s:ns:")]
    return len(namespaces) == 1 and all(s.startswith("k8s:") for s in selectors)


def agent_alias_id(topology: Topology, agent: Agent) -> str:
    """The node alias of the agent's service account (see :func:`_agent_alias`)."""
    k = agent.kubernetes
    assert k is not None
    td = topology.server(agent.server).trust_domain
    return str(node_alias_id(td, k.namespace, k.service_account))


def _cluster_spiffe_id(topology: Topology, server: Server, w: Workload) -> Obj:
    selectors = workload_selectors(w, "kubernetes")
    ns = next(s for s in selectors if s.startswith("k8s:ns:")).removeprefix("k8s:ns:")
    spec: Obj = {
        "className": server.name,
        "spiffeIDTemplate": w.spiffe_id,
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        # without it, every pod of the namespace would get an entry for this ID
        "podSelector": {"matchLabels": workload_pod_labels(topology, w)},
        "workloadSelectorTemplates": sorted(s for s in selectors if not s.startswith("k8s:ns:")),
    }
    _entry_options(spec, w, dns_key="dnsNameTemplates", ttl_key="ttl", jwt_key="jwtTtl")
    assert server.kubernetes is not None
    return obj(
        API_VERSION,
        "ClusterSPIFFEID",
        meta(topology, server.kubernetes.cluster, w.name, app=w.name, component="registration"),
        spec=spec,
    )


def workload_pod_labels(topology: Topology, w: Workload) -> dict[str, str]:
    """The labels of the workload's pods. A workload named like a server is that server's
    own identity (a nested server fetching its CA): its pods are the server's."""
    if any(s.name == w.name for s in topology.servers):
        return selector_labels(w.name, "server")
    return {LABEL_WORKLOAD: w.name}


def _entry_options(spec: Obj, w: Workload, *, dns_key: str, ttl_key: str, jwt_key: str) -> None:
    if w.dns_names:
        spec[dns_key] = list(w.dns_names)
    if w.federates_with:
        spec["federatesWith"] = sorted(str(td) for td in w.federates_with)
    if w.x509_svid_ttl is not None:
        spec[ttl_key] = format_duration(w.x509_svid_ttl)
    if w.jwt_svid_ttl is not None:
        spec[jwt_key] = format_duration(w.jwt_svid_ttl)
    if w.hint:
        spec["hint"] = w.hint
    if w.downstream:
        spec["downstream"] = True


def _agent_alias(topology: Topology, server: Server, agent: Agent) -> Obj:
    """A node alias: one ID for every node attested by the agent's service account, so
    entries a ClusterSPIFFEID cannot express (non-k8s selectors) still have a parent.
    k8s_psat selectors cannot tell apart agents that share a service account, so the alias
    is per service account, not per agent."""
    assert agent.kubernetes is not None and server.kubernetes is not None
    k = agent.kubernetes
    return obj(
        API_VERSION,
        "ClusterStaticEntry",
        meta(
            topology,
            server.kubernetes.cluster,
            f"{server.name}-{k.namespace}-{k.service_account}-node-alias",
            app=server.name,
            component="registration",
        ),
        spec={
            "className": server.name,
            "spiffeID": agent_alias_id(topology, agent),
            "parentID": str(spire_server_id(server.trust_domain)),
            "selectors": [
                f"k8s_psat:agent_ns:{k.namespace}",
                f"k8s_psat:agent_sa:{k.service_account}",
                f"k8s_psat:cluster:{k.cluster}",
            ],
        },
    )


def _static_entry(topology: Topology, server: Server, w: Workload) -> Obj:
    assert server.kubernetes is not None
    spec: Obj = {
        "className": server.name,
        "spiffeID": w.spiffe_id,
        "parentID": agent_alias_id(topology, topology.agent(w.agent)),
        "selectors": list(workload_selectors(w, "kubernetes")),
    }
    _entry_options(spec, w, dns_key="dnsNames", ttl_key="x509SVIDTTL", jwt_key="jwtSVIDTTL")
    return obj(
        API_VERSION,
        "ClusterStaticEntry",
        meta(topology, server.kubernetes.cluster, w.name, app=w.name, component="registration"),
        spec=spec,
    )


def _federated_trust_domains(topology: Topology, server: Server) -> list[Obj]:
    assert server.kubernetes is not None
    out: list[Obj] = []
    for fed in topology.federations_of(server.name):
        profile: Obj = {"type": fed.profile}
        if fed.profile == "https_spiffe":
            profile["endpointSPIFFEID"] = endpoint_spiffe_id(fed)
        out.append(
            obj(
                API_VERSION,
                "ClusterFederatedTrustDomain",
                meta(
                    topology,
                    server.kubernetes.cluster,
                    f"{server.name}-{fed.trust_domain.name.replace('.', '-')}",
                    app=server.name,
                    component="registration",
                ),
                spec={
                    "className": server.name,
                    "trustDomain": str(fed.trust_domain),
                    "bundleEndpointURL": bundle_endpoint_url(topology, fed, "kubernetes"),
                    "bundleEndpointProfile": profile,
                },
            )
        )
    return out


def render_registrations(topology: Topology, server: Server) -> list[Obj]:
    """Custom resources reconciled by the server's controller manager: federation first,
    then node aliases for its k8s_psat agents, then one resource per workload."""
    if not controller_manager_enabled(topology, server):
        return []
    out = _federated_trust_domains(topology, server)
    agents = [
        a
        for a in topology.agents_of(server.name)
        if a.kubernetes is not None and a.kubernetes.node_attestor == "k8s_psat"
    ]
    aliases = {agent_alias_id(topology, a): _agent_alias(topology, server, a) for a in agents}
    out += list(aliases.values())
    for w in topology.workloads:
        if topology.agent(w.agent).server != server.name:
            continue
        if k8s_selectable(workload_selectors(w, "kubernetes")):
            out.append(_cluster_spiffe_id(topology, server, w))
        elif any(a.name == w.agent for a in agents):
            out.append(_static_entry(topology, server, w))
    return out
