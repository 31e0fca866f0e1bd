"""The SPIFFE CSI driver: one per agent whose socket pods consume, under its own plugin
name, so a pod in a "restricted" namespace gets the socket as a csi volume (hostPath is
not allowed there)."""

from __future__ import annotations

from spire_fabric.render.kubernetes._common import (
    NODE_CRITICAL,
    Obj,
    agent_host_socket_dir,
    agent_node_selector,
    csi_driver_name,
    meta,
    obj,
    selector_labels,
    service_account,
    small_resources,
)
from spire_fabric.topology import Agent, Topology


def csi_driver_object(topology: Topology, agent: Agent) -> Obj:
    assert agent.kubernetes is not None
    return obj(
        "storage.k8s.io/v1",
        "CSIDriver",
        meta(
            topology,
            agent.kubernetes.cluster,
            csi_driver_name(agent),
            app=agent.name,
            component="csi-driver",
        ),
        spec={
            "attachRequired": False,
            "podInfoOnMount": True,
            # The socket is world-accessible; changing ownership would only break it.
            "fsGroupPolicy": "None",
            "volumeLifecycleModes": ["Ephemeral"],
        },
    )


def render_csi_driver(topology: Topology, agent: Agent) -> list[Obj]:
    """spiffe-csi's own example, one per agent under its own plugin name. The driver
    container must be privileged: it bind-mounts into pods with Bidirectional propagation."""
    k = agent.kubernetes
    assert k is not None
    name = f"{agent.name}-csi-driver"
    driver = csi_driver_name(agent)
    plugin_dir = f"/var/lib/kubelet/plugins/{driver}"
    labels = selector_labels(agent.name, "csi-driver")
    containers = [
        {
            "name": "spiffe-csi-driver",
            "image": topology.kubernetes.images.csi_driver,
            "imagePullPolicy": "IfNotPresent",
            "args": [
                "-workload-api-socket-dir",
                "/spire-agent-socket",
                "-plugin-name",
                driver,
                "-csi-socket-path",
                "/spiffe-csi/csi.sock",
            ],
            "env": [
                {"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
            ],
            "resources": small_resources(),
            "securityContext": {
                "capabilities": {"drop": ["ALL"]},
                "privileged": True,
                "readOnlyRootFilesystem": True,
            },
            "volumeMounts": [
                {"name": "agent-sockets", "mountPath": "/spire-agent-socket", "readOnly": True},
                {"name": "csi-socket", "mountPath": "/spiffe-csi"},
                {
                    "name": "mountpoints",
                    "mountPath": "/var/lib/kubelet/pods",
                    "mountPropagation": "Bidirectional",
                },
            ],
        },
        {
            "name": "node-driver-registrar",
            "image": topology.kubernetes.images.csi_registrar,
            "imagePullPolicy": "IfNotPresent",
            "args": [
                "-csi-address",
                "/spiffe-csi/csi.sock",
                "-kubelet-registration-path",
                f"{plugin_dir}/csi.sock",
            ],
            "resources": small_resources(),
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": True,
            },
            "volumeMounts": [
                {"name": "csi-socket", "mountPath": "/spiffe-csi"},
                {"name": "registration", "mountPath": "/registration"},
            ],
        },
    ]
    volumes = [
        {
            "name": "agent-sockets",
            "hostPath": {"path": agent_host_socket_dir(agent), "type": "DirectoryOrCreate"},
        },
        {"name": "csi-socket", "hostPath": {"path": plugin_dir, "type": "DirectoryOrCreate"}},
        {"name": "mountpoints", "hostPath": {"path": "/var/lib/kubelet/pods", "type": "Directory"}},
        {
            "name": "registration",
            "hostPath": {"path": "/var/lib/kubelet/plugins_registry", "type": "Directory"},
        },
    ]
    pod_spec: Obj = {
        "serviceAccountName": name,
        # the driver and the registrar talk to the kubelet over sockets, never to the API
        "automountServiceAccountToken": False,
        "priorityClassName": NODE_CRITICAL,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
        "volumes": volumes,
    }
    node_selector = agent_node_selector(topology, agent)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return [
        service_account(topology, k.cluster, name, k.namespace),
        csi_driver_object(topology, agent),
        obj(
            "apps/v1",
            "DaemonSet",
            meta(topology, k.cluster, name, k.namespace, app=agent.name, component="csi-driver"),
            spec={
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        ),
    ]
