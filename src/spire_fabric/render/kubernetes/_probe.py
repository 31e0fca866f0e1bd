"""A short-lived pod that fetches a registered-only workload's identity for `verify`.

Why a pod: only a pod of the workload's service account, next to its agent, gets its
identity from the Workload API (the agent's ``k8s`` attestor decides). It runs the
workload image's ``python -m spire_fabric.workload.relay`` through an exec, sleeps until
deleted, and is gone by itself after five minutes even if the installer is killed.
"""

from __future__ import annotations

from spire_fabric.render.kubernetes._common import (
    LABEL_MANAGED_BY,
    LABEL_WORKLOAD,
    MANAGED_BY,
    WORKLOAD_SOCKET_DIR,
    WORKLOAD_UID,
    Obj,
    agent_node_selector,
    restricted_container,
    restricted_pod,
    workload_socket_address,
    workload_socket_volume,
)
from spire_fabric.render.kubernetes._resources import resources
from spire_fabric.topology import Topology, Workload
from spire_fabric.workload import SOCKET_ENV

__all__ = ["PROBE_LABEL", "identity_probe_pod"]

PROBE_LABEL = "spire-fabric.io/probe"


def identity_probe_pod(topology: Topology, workload: Workload, name: str) -> Obj:
    """The probe pod ``name`` for ``workload`` (in its namespace, as its service account)."""
    w, t = workload, topology
    assert w.kubernetes is not None
    agent = t.agent(w.agent)
    spec: Obj = {
        "automountServiceAccountToken": False,  # attested by its account, needs no token
        "serviceAccountName": w.kubernetes.service_account,
        "restartPolicy": "Never",
        "activeDeadlineSeconds": 300,  # gone even if the installer is killed mid-check
        "terminationGracePeriodSeconds": 0,
        "securityContext": restricted_pod(WORKLOAD_UID),
        "containers": [
            {
                "name": "probe",
                "image": t.kubernetes.images.workload,
                "imagePullPolicy": "IfNotPresent",
                "command": ["python3", "-c", "import time; time.sleep(290)"],
                "env": [
                    {"name": SOCKET_ENV, "value": workload_socket_address(agent)}
                ],
                "resources": resources("identity-probe"),
                "securityContext": restricted_container(),
                "volumeMounts": [
                    {"name": "spiffe", "mountPath": WORKLOAD_SOCKET_DIR, "readOnly": True}
                ],
            }
        ],
        "volumes": [workload_socket_volume(t, agent, "spiffe")],
    }
    selector = agent_node_selector(t, agent)
    if selector:
        spec["nodeSelector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": w.kubernetes.namespace,
            "labels": {PROBE_LABEL: w.name, LABEL_WORKLOAD: w.name, LABEL_MANAGED_BY: MANAGED_BY},
        },
        "spec": spec,
    }
