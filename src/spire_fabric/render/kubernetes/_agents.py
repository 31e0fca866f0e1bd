"""SPIRE agents (one DaemonSet each) and the SPIFFE CSI driver that hands their socket to
pods in "restricted" namespaces.

The agent is the one pod that needs the host: ``hostPID`` so the workload attestors can
read a caller's /proc entry (the caller's PID is in the host PID namespace), and a hostPath
directory for the Workload API socket so it outlives agent restarts. It runs as a uid of
its own (``AGENT_UID``, not root: SPIRE's image would run it as root) with every
capability dropped, no privilege escalation, a read-only root filesystem and the runtime's
seccomp profile. The files it reads under hostPID (/proc/<pid>/cgroup, mountinfo, stat,
status) are world-readable, so no capability is needed for other uids' pods. A one-shot
init container, root with CAP_CHOWN only, hands it the socket directory that the kubelet
creates root-owned.
"""

from __future__ import annotations

from posixpath import dirname

from spire_fabric.render._agent import HOST_KUBELET_CA, render_agent_config
from spire_fabric.render._paths import RenderPaths
from spire_fabric.render.kubernetes._common import (
    AGENT_TOKEN_DIR,
    AGENT_UID,
    NODE_CRITICAL,
    PSAT_AUDIENCE,
    Obj,
    agent_host_socket_dir,
    agent_node_selector,
    config_map,
    meta,
    obj,
    readiness_probe,
    resources,
    selector_labels,
    small_resources,
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
        "runAsGroup": AGENT_UID,
        "runAsNonRoot": True,
        "runAsUser": AGENT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _init_container(topology: Topology, agent: Agent) -> Obj:
    """Root with CAP_CHOWN and nothing else, for one chown: the kubelet creates the hostPath
    socket directory root-owned (and an agent that ran as root before left its files)."""
    socket_dir = dirname(PATHS.agent_socket(agent))
    data_dir = PATHS.agent_data_dir(agent.name)
    return {
        "name": "chown-agent-dirs",
        "image": topology.kubernetes.images.agent_init,
        "imagePullPolicy": "IfNotPresent",
        "command": ["chown", "-R", f"{AGENT_UID}:{AGENT_UID}", socket_dir, data_dir],
        "resources": small_resources(),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["CHOWN"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "runAsUser": 0,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": data_dir},
            {"name": "sockets", "mountPath": socket_dir},
        ],
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
    if _host_kubelet_ca(agent) is not None:
        mounts.append({"name": "kubelet-ca", "mountPath": HOST_KUBELET_CA, "readOnly": True})
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
        c["readinessProbe"] = readiness_probe({"httpGet": {"path": "/ready", "port": "health"}})
    c["resources"] = resources(("50m", "500m"), ("64Mi", "512Mi"), ("16Mi", "256Mi"))
    c["securityContext"] = _agent_security_context()
    c["volumeMounts"] = mounts
    return c


def _host_kubelet_ca(agent: Agent) -> str | None:
    """The node's file the agent verifies kubelets against, when it is not the
    service-account CA (``kubelet_verification: host-ca``)."""
    k = agent.kubernetes
    if k is None or k.kubelet_verification != "host-ca":
        return None
    return k.kubelet_ca_host_path


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
    host_ca = _host_kubelet_ca(agent)
    if host_ca is not None:
        # the file alone, not its directory (on a control-plane node that would hold the
        # CA's key too); a file mount pins the inode, so a replaced file needs a restart
        volumes.append({"name": "kubelet-ca", "hostPath": {"path": host_ca, "type": "File"}})
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
        "priorityClassName": NODE_CRITICAL,
        "securityContext": {
            "fsGroup": AGENT_UID,
            "runAsGroup": AGENT_UID,
            "runAsNonRoot": True,
            "runAsUser": AGENT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [_init_container(topology, agent)],
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
