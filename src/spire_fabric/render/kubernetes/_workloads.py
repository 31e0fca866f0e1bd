"""The example workloads: ServiceAccount, Deployment and (when they serve) a Service.

The image is a placeholder pinned by the topology (``images.workload``, python:3.11.13-slim
by default) running ``python -m examples.<name>``; a real deployment builds an image holding
spire_fabric and the examples and overrides ``images.workload``. The Workload API socket
arrives through the agent's SPIFFE CSI driver, so the pod stays Pod Security "restricted".
"""

from __future__ import annotations

from spire_fabric.render._paths import RenderPaths
from spire_fabric.render.kubernetes._common import (
    WORKLOAD_SOCKET_DIR,
    WORKLOAD_UID,
    Obj,
    agent_node_selector,
    meta,
    obj,
    restricted_container,
    restricted_pod,
    selector_labels,
    service_account,
    workload_module,
    workload_socket_volume,
)
from spire_fabric.topology import Topology, Workload

COMPONENT = "workload"
PATHS = RenderPaths.kubernetes()


def workload_cluster(topology: Topology, w: Workload) -> str:
    """A workload runs where its agent runs: only that agent can attest it."""
    agent = topology.agent(w.agent)
    assert agent.kubernetes is not None
    return agent.kubernetes.cluster


def render_workload(topology: Topology, w: Workload) -> list[Obj]:
    k = w.kubernetes
    assert k is not None
    agent = topology.agent(w.agent)
    cluster = workload_cluster(topology, w)
    labels = selector_labels(w.name, COMPONENT)
    socket_file = PATHS.agent_socket(agent.name).rsplit("/", 1)[1]
    container: Obj = {
        "name": w.name,
        "image": topology.kubernetes.images.workload,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", workload_module(w)],
        "env": [
            {
                "name": "SPIFFE_ENDPOINT_SOCKET",
                "value": f"unix://{WORKLOAD_SOCKET_DIR}/{socket_file}",
            },
            {"name": "SPIFFE_ID", "value": w.spiffe_id},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
    }
    if k.service_port is not None:
        container["ports"] = [{"name": "https", "containerPort": k.service_port, "protocol": "TCP"}]
        container["readinessProbe"] = {"tcpSocket": {"port": "https"}, "periodSeconds": 10}
    container["securityContext"] = restricted_container()
    container["volumeMounts"] = [
        {"name": "spiffe-workload-api", "mountPath": WORKLOAD_SOCKET_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    pod_spec: Obj = {
        "serviceAccountName": k.service_account,
        "securityContext": restricted_pod(WORKLOAD_UID),
        "containers": [container],
        "volumes": [
            workload_socket_volume(topology, agent, "spiffe-workload-api"),
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    node_selector = agent_node_selector(topology, agent)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector  # next to the agent that attests it
    out = [
        service_account(topology, cluster, k.service_account, k.namespace),
        obj(
            "apps/v1",
            "Deployment",
            meta(topology, cluster, w.name, k.namespace, app=w.name, component=COMPONENT),
            spec={
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        ),
    ]
    if k.service_port is not None:
        port: Obj = {
            "name": "https",
            "port": k.service_port,
            "protocol": "TCP",
            "targetPort": "https",
        }
        if k.node_port is not None:
            port["nodePort"] = k.node_port
        out.append(
            obj(
                "v1",
                "Service",
                meta(topology, cluster, w.name, k.namespace, app=w.name, component=COMPONENT),
                spec={
                    "type": "NodePort" if k.node_port is not None else "ClusterIP",
                    "selector": labels,
                    "ports": [port],
                },
            )
        )
    return out
