"""Namespaces with Pod Security Admission labels that the rendered pods really satisfy."""

from __future__ import annotations

from spire_fabric.render.kubernetes._common import Obj, meta, obj, uses_csi
from spire_fabric.topology import Topology, agent_namespaces

PSA = "pod-security.kubernetes.io"


def pod_security_level(topology: Topology, cluster: str, namespace: str) -> str:
    """ "privileged" only where agents (and their CSI drivers) run: they need hostPID and
    hostPath, which even "baseline" forbids. The model keeps agents in namespaces of their
    own (validation refuses a server or workload there), so the label grants host access
    to nothing else. Everything else enforces "restricted".

    One exception, forced by SPIRE and Kubernetes rather than chosen: without cluster-scoped
    RBAC there is no CSIDriver, so a workload can only reach the agent socket through a
    hostPath volume, and its namespace must be privileged for that mount alone.
    """
    if namespace in agent_namespaces(topology, cluster):
        return "privileged"
    if not uses_csi(topology) and namespace in _socket_consumer_namespaces(topology, cluster):
        return "privileged"
    return "restricted"


def _socket_consumer_namespaces(topology: Topology, cluster: str) -> set[str]:
    """Namespaces whose pods mount an agent socket: workloads that run, and nested servers
    (they fetch their CA through their parent's agent)."""
    from spire_fabric.topology import SpireUpstreamAuthority

    out = {
        w.kubernetes.namespace
        for w in topology.workloads
        if w.kubernetes is not None and topology.agent(w.agent).kubernetes is not None
        and topology.agent(w.agent).kubernetes.cluster == cluster  # type: ignore[union-attr]
    }
    out |= {
        s.kubernetes.namespace
        for s in topology.servers
        if s.kubernetes is not None and s.kubernetes.cluster == cluster
        and isinstance(s.upstream_authority, SpireUpstreamAuthority)
    }
    return out


def render_namespaces(topology: Topology, cluster: str) -> list[Obj]:
    c = topology.cluster(cluster)
    out: list[Obj] = []
    for ns in c.namespaces:
        level = pod_security_level(topology, cluster, ns)
        # audit and warn say the same as enforce: a namespace is privileged on purpose or
        # not at all, and an expected warning on every agent rollout would teach people to
        # ignore the real ones.
        labels = {
            f"{PSA}/{mode}{suffix}": value
            for mode in ("enforce", "audit", "warn")
            for suffix, value in (("", level), ("-version", "latest"))
        }
        out.append(obj("v1", "Namespace", meta(topology, cluster, ns, labels=labels)))
    return out
