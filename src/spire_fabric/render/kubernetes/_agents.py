"""SPIRE agents (one DaemonSet each) and the SPIFFE CSI driver that hands their socket to
pods in "restricted" namespaces.

The agent is the one pod that needs the host: ``hostPID`` so the workload attestors can
read a caller's /proc entry (the caller's PID is in the host PID namespace), and a hostPath
directory for the Workload API socket so it outlives agent restarts. It runs as root (the
image's default, so it owns that directory) but with every capability dropped, no
privilege escalation, a read-only root filesystem and the runtime's seccomp profile.
"""

from __future__ import annotations

from posixpath import dirname

from spire_fabric.render._agent import render_agent_config
from spire_fabric.render._paths import RenderPaths
from spire_fabric.render.kubernetes._common import (
    AGENT_TOKEN_DIR,
    CSI_DRIVER_IMAGE,
    CSI_REGISTRAR_IMAGE,
    PSAT_AUDIENCE,
    Obj,
    agent_host_socket_dir,
    agent_node_selector,
    config_map,
    csi_driver_name,
    meta,
    obj,
    selector_labels,
    service_account,
)
from spire_fabric.topology import Agent, Topology, agent_node_attestor

PATHS = RenderPaths.kubernetes()
COMPONENT = "agent"
TOKEN_FILE = (
    "spire-agent"  # k8s_psat agent default token_path is /var/run/secrets/tokens/spire-agent
)
TOKEN_TTL_SECONDS = 7200


JOIN_TOKEN_DIR = "/run/spire/join-token"


def agent_config_map_name(agent: Agent) -> str:
    return f"{agent.name}-config"


def join_token_secret_name(agent: Agent) -> str:
    """Where the installer puts a join_token agent's one-time token (key ``token``): the
    agent reads it as ``-joinTokenFile`` from this Secret mounted 0400, never from argv,
    env or agent.conf."""
    return f"{agent.name}-join-token"


def _agent_security_context() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsUser": 0,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _agent_container(topology: Topology, agent: Agent) -> Obj:
    psat = agent_node_attestor(agent, "kubernetes") == "k8s_psat"
    args = ["-config", PATHS.agent_config(agent.name)]
    # The k8s workload attestor dials the kubelet at https://$MY_NODE_NAME:10250. A node's
    # name need not resolve inside a pod (it does not on the test clusters, nor on many
    # bare-metal ones); its IP always routes, so the attestor gets the node's IP.
    env: list[Obj] = [
        {"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
    ]
    if not psat:
        # a file, not argv or env: a hostPID pod could read either from /proc
        args += ["-joinTokenFile", f"{JOIN_TOKEN_DIR}/token"]
    mounts: list[Obj] = [
        {"name": "config", "mountPath": dirname(PATHS.agent_config(agent.name)), "readOnly": True},
        {
            "name": "bundle",
            "mountPath": dirname(PATHS.agent_trust_bundle(agent.name)),
            "readOnly": True,
        },
        {"name": "data", "mountPath": PATHS.agent_data_dir(agent.name)},
        {"name": "sockets", "mountPath": dirname(PATHS.agent_socket(agent))},
    ]
    if agent.admin_socket:
        mounts.append({"name": "admin", "mountPath": dirname(PATHS.agent_admin_socket(agent))})
    if psat:
        mounts.append({"name": "psat-token", "mountPath": AGENT_TOKEN_DIR, "readOnly": True})
    else:
        mounts.append({"name": "join-token", "mountPath": JOIN_TOKEN_DIR, "readOnly": True})
    c: Obj = {
        "name": "spire-agent",
        "image": topology.kubernetes.images.agent,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
    }
    if agent.telemetry_port is not None:  # SPIRE's Prometheus telemetry (agent.conf)
        c["ports"] = [
            {"name": "telemetry", "containerPort": agent.telemetry_port, "protocol": "TCP"}
        ]
    if agent.health_port is not None:
        c["ports"] = [
            {"name": "health", "containerPort": agent.health_port, "protocol": "TCP"},
            *c.get("ports", []),
        ]
        c["livenessProbe"] = {
            "httpGet": {"path": "/live", "port": "health"},
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
        }
        c["readinessProbe"] = {
            "httpGet": {"path": "/ready", "port": "health"},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
        }
    c["securityContext"] = _agent_security_context()
    c["volumeMounts"] = mounts
    return c


def _agent_volumes(topology: Topology, agent: Agent) -> list[Obj]:
    server = topology.server(agent.server)
    bundle_cm = server.kubernetes.bundle_configmap if server.kubernetes else "spire-bundle"
    volumes: list[Obj] = [
        {"name": "config", "configMap": {"name": agent_config_map_name(agent)}},
        {"name": "bundle", "configMap": {"name": bundle_cm}},
        {"name": "data", "emptyDir": {}},
        {
            "name": "sockets",
            "hostPath": {"path": agent_host_socket_dir(agent), "type": "DirectoryOrCreate"},
        },
    ]
    if agent.admin_socket:
        volumes.append({"name": "admin", "emptyDir": {}})
    if agent_node_attestor(agent, "kubernetes") != "k8s_psat":
        volumes.append(
            {
                "name": "join-token",
                "secret": {"secretName": join_token_secret_name(agent), "defaultMode": 0o400},
            }
        )
    else:
        volumes.append(
            {
                "name": "psat-token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": PSAT_AUDIENCE,
                                "expirationSeconds": TOKEN_TTL_SECONDS,
                                "path": TOKEN_FILE,
                            }
                        }
                    ]
                },
            }
        )
    return volumes


def render_agent_objects(topology: Topology, agent: Agent) -> list[Obj]:
    k = agent.kubernetes
    assert k is not None
    labels = selector_labels(agent.name, COMPONENT)
    pod_spec: Obj = {
        "serviceAccountName": k.service_account,
        "hostPID": True,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_agent_container(topology, agent)],
        "volumes": _agent_volumes(topology, agent),
    }
    node_selector = agent_node_selector(topology, agent)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    daemon_set = obj(
        "apps/v1",
        "DaemonSet",
        meta(topology, k.cluster, agent.name, k.namespace, app=agent.name, component=COMPONENT),
        spec={
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    )
    cm = config_map(
        topology,
        k.cluster,
        agent_config_map_name(agent),
        k.namespace,
        {"agent.conf": render_agent_config(topology, agent.name, PATHS)},
        agent.name,
    )
    return [cm, daemon_set]


# --- SPIFFE CSI driver ------------------------------------------------------------------


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
            "image": CSI_DRIVER_IMAGE,
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
            "image": CSI_REGISTRAR_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "args": [
                "-csi-address",
                "/spiffe-csi/csi.sock",
                "-kubelet-registration-path",
                f"{plugin_dir}/csi.sock",
            ],
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
