"""Shared vocabulary of the Kubernetes renderer: object shells, labels, security contexts,
and the few placement decisions more than one object kind must agree on."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from spire_fabric.render._paths import RenderPaths
from spire_fabric.topology import Agent, Server, Topology

Obj = dict[str, Any]

# The SPIRE server image runs as 1000:1000 (SPIRE's Dockerfile, spireuid/spiregid); so do
# the project's workloads. The agent gets a uid and gid of its own, shared with nothing we
# run: under hostPID another process of the same uid could read its /proc/<pid>/environ
# and memory maps, and it could read theirs.
SPIRE_UID = 1000
WORKLOAD_UID = 1000
MYSQL_UID = 999  # the mysql user of the official image
AGENT_UID = 1100

# Agent and CSI driver DaemonSets: the node's identity plumbing, evicted last and
# scheduled first (a node whose agent is gone serves no identities).
NODE_CRITICAL = "system-node-critical"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TOPOLOGY = "spire-fabric.io/topology"
LABEL_CLUSTER = "spire-fabric.io/cluster"
# On every pod of a workload: its ClusterSPIFFEID selects pods by it, so the controller
# manager makes one entry per pod of that workload, not one per pod of the namespace.
# Pods a user runs for a registered-only workload carry it too.
LABEL_WORKLOAD = "spire-fabric.io/workload"
MANAGED_BY = "spire-fabric"

HOST_SOCKET_ROOT = "/run/spire/agent-sockets"
WORKLOAD_SOCKET_DIR = "/spiffe-workload-api"
TLS_SECRET = "kubernetes.io/tls"
AGENT_TOKEN_DIR = "/var/run/secrets/tokens"  # k8s_psat agent default token_path's directory
PSAT_AUDIENCE = "spire-server"  # k8s_psat server default audience


def meta(
    topology: Topology,
    cluster: str,
    name: str,
    namespace: str | None = None,
    *,
    component: str | None = None,
    app: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """Every object carries its topology and cluster as labels: the runtime routes objects
    to clusters by them, and ``down`` deletes exactly what carries them."""
    all_labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TOPOLOGY: topology.name,
        LABEL_CLUSTER: cluster,
    }
    if app is not None:
        all_labels[LABEL_NAME] = app
    if component is not None:
        all_labels[LABEL_COMPONENT] = component
    all_labels.update(labels or {})
    m: Obj = {"name": name}
    if namespace is not None:
        m["namespace"] = namespace
    m["labels"] = dict(sorted(all_labels.items()))
    return m


def obj(api_version: str, kind: str, metadata: Obj, **body: Any) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def secret(
    topology: Topology,
    cluster: str,
    name: str,
    namespace: str,
    *,
    app: str,
    component: str,
    data: Mapping[str, bytes] | None = None,
    secret_type: str = "Opaque",
) -> Obj:
    """A Secret. Without ``data`` it is a skeleton with no data field, so applying it never
    takes away values that another field manager (or a later `up`) filled in.

    ``secret_type`` ``kubernetes.io/tls`` (a certificate and its key as ``tls.crt`` and
    ``tls.key``) tells readers and policy engines what it holds; the API server then refuses
    one without both keys, so such a skeleton is for review, never for applying."""
    s = obj("v1", "Secret", meta(topology, cluster, name, namespace, app=app,
                                  component=component), type=secret_type)  # fmt: skip
    if data:
        s["data"] = {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}
    return s


def selector_labels(app: str, component: str) -> dict[str, str]:
    return {LABEL_NAME: app, LABEL_COMPONENT: component}


def resources(cpu: tuple[str, str], memory: tuple[str, str], disk: tuple[str, str]) -> Obj:
    """Requests and limits (request, limit) of a node-level container: bounded, so a leak
    in one cannot starve the node's workloads, and requested, so the scheduler counts it."""
    names = ("cpu", "memory", "ephemeral-storage")
    pairs = (cpu, memory, disk)
    return {
        "limits": {n: p[1] for n, p in zip(names, pairs, strict=True)},
        "requests": {n: p[0] for n, p in zip(names, pairs, strict=True)},
    }


def small_resources() -> Obj:
    """A sidecar's or init container's share (a fresh dict: objects never share parts)."""
    return resources(("10m", "100m"), ("16Mi", "64Mi"), ("1Mi", "16Mi"))


def readiness_probe(handler: Obj) -> Obj:
    """A readiness probe asked every second from the container's start.

    Readiness is what `up` waits on (a rollout is done when its pods are Ready), so a pod
    should be Ready within a second of answering: with Kubernetes' default period (10 s)
    and a start delay, each stage waited 10-15 s for a process that answered in 3. An HTTP
    or TCP probe a second costs the kubelet next to nothing. Liveness keeps its slow period
    and its delay: it restarts a container, and must not while the process is starting.
    """
    return {**handler, "periodSeconds": 1}


def restricted_container() -> Obj:
    """What Pod Security "restricted" demands of a container, plus a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod(uid: int) -> Obj:
    return {
        "fsGroup": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "runAsUser": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def config_map(
    topology: Topology, cluster: str, name: str, namespace: str, data: dict[str, str], app: str
) -> Obj:
    return obj(
        "v1",
        "ConfigMap",
        meta(topology, cluster, name, namespace, app=app, component="config"),
        data=dict(sorted(data.items())),
    )


def service_account(topology: Topology, cluster: str, name: str, namespace: str) -> Obj:
    return obj("v1", "ServiceAccount", meta(topology, cluster, name, namespace, app=name))


def server_cluster(server: Server) -> str:
    assert server.kubernetes is not None
    return server.kubernetes.cluster


def k8s_agents(topology: Topology) -> tuple[Agent, ...]:
    return tuple(a for a in topology.agents if a.kubernetes is not None)


def k8s_servers(topology: Topology) -> tuple[Server, ...]:
    return tuple(s for s in topology.servers if s.kubernetes is not None)


def agent_node_selector(topology: Topology, agent: Agent) -> dict[str, str] | None:
    """Agents of one server in one cluster must run on different nodes.

    k8s_psat names an agent ``spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node uid>``, so
    two such agents of the same server on one node would share an ID and evict each other
    on every re-attestation. One label key per server with the agent's name as value makes
    the collision impossible: a node carries one value per key. The runtime labels nodes.
    """
    k = agent.kubernetes
    assert k is not None
    siblings = [
        a
        for a in topology.agents_of(agent.server)
        if a.kubernetes is not None and a.kubernetes.cluster == k.cluster
    ]
    if len(siblings) < 2:
        return None
    return {f"spire-fabric.io/agent.{agent.server}": agent.name}


def csi_driver_name(agent: Agent) -> str:
    """One CSI driver per agent: each agent serves its own socket directory."""
    return f"{agent.name}.csi.spiffe.io"


def agent_host_socket_dir(agent: Agent) -> str:
    return f"{HOST_SOCKET_ROOT}/{agent.name}"


def uses_csi(topology: Topology) -> bool:
    """Workloads reach the agent socket through the SPIFFE CSI driver, which keeps their
    namespaces "restricted" (csi volumes are allowed there, hostPath is not). Registering a
    CSIDriver is cluster-scoped, so a namespace-scoped install mounts the host directory,
    as does a topology that asks for ``workload_socket: host-path`` (no CSI driver there)."""
    k = topology.kubernetes
    return k.rbac == "cluster" and k.workload_socket == "csi"


def csi_agents(topology: Topology) -> tuple[Agent, ...]:
    """Agents whose socket a pod consumes: workloads' agents and nested servers' upstream
    agents. Only these get a CSI driver."""
    from spire_fabric.topology import SpireUpstreamAuthority

    if not uses_csi(topology):
        return ()
    names = {w.agent for w in topology.workloads if w.kubernetes is not None}
    names |= {
        s.upstream_authority.agent
        for s in k8s_servers(topology)
        if isinstance(s.upstream_authority, SpireUpstreamAuthority)
    }
    return tuple(a for a in k8s_agents(topology) if a.name in names)


def workload_socket_volume(topology: Topology, agent: Agent, name: str) -> Obj:
    if uses_csi(topology):
        return {"name": name, "csi": {"driver": csi_driver_name(agent), "readOnly": True}}
    return {
        "name": name,
        "hostPath": {"path": agent_host_socket_dir(agent), "type": "Directory"},
    }


def workload_socket_address(agent: Agent) -> str:
    """The Workload API address a pod of ``agent``'s workloads dials (``SOCKET_ENV``): the
    agent's socket as the pod mounts its directory."""
    socket_file = RenderPaths.kubernetes().agent_socket(agent).rsplit("/", 1)[1]
    return f"unix://{WORKLOAD_SOCKET_DIR}/{socket_file}"
