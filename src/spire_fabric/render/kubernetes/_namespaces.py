"""Namespaces with Pod Security Admission labels that the rendered pods really satisfy."""

from __future__ import annotations

from spire_fabric.render.kubernetes._common import Obj, agent_namespaces, meta, obj, uses_csi
from spire_fabric.topology import Topology

PSA = "pod-security.kubernetes.io"


def pod_security_level(topology: Topology, cluster: str, namespace: str) -> str:
    """ "privileged" only where an agent (or its CSI driver) runs: they need hostPID and
    hostPath, which even "baseline" forbids. Everything else is "restricted".

    The model places agents next to their server (``spire-upstream`` holds both), and the
    k8s_psat allow list is ``namespace:service_account`` of the agent, so moving agents
    elsewhere here would break attestation. Such a shared namespace is therefore enforced
    as privileged but audited and warned as restricted, and the tests prove that every pod
    other than the agents' in it is restricted-clean anyway.
    """
    if namespace in agent_namespaces(topology, cluster):
        return "privileged"
    if not uses_csi(topology) and any(
        w.kubernetes is not None and w.kubernetes.namespace == namespace for w in topology.workloads
    ):
        return "privileged"  # namespace-scoped installs mount the socket as hostPath
    return "restricted"


def render_namespaces(topology: Topology, cluster: str) -> list[Obj]:
    c = topology.cluster(cluster)
    out: list[Obj] = []
    for ns in c.namespaces:
        level = pod_security_level(topology, cluster, ns)
        labels = {
            f"{PSA}/enforce": level,
            f"{PSA}/enforce-version": "latest",
            f"{PSA}/audit": "restricted",
            f"{PSA}/audit-version": "latest",
            f"{PSA}/warn": "restricted",
            f"{PSA}/warn-version": "latest",
        }
        out.append(obj("v1", "Namespace", meta(topology, cluster, ns, labels=labels)))
    return out
