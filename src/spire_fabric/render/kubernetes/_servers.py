"""SPIRE servers: config, bundle ConfigMaps, Service with NodePorts, and the StatefulSet
(with the spire-controller-manager as a sidecar sharing the server's API socket)."""

from __future__ import annotations

from posixpath import dirname

from spire_fabric.render._paths import K8S_ROOT, RenderPaths
from spire_fabric.render._server import render_server_config
from spire_fabric.render.kubernetes._common import (
    SPIRE_UID,
    Obj,
    config_map,
    meta,
    obj,
    readiness_probe,
    restricted_container,
    restricted_pod,
    selector_labels,
    workload_socket_volume,
)
from spire_fabric.render.kubernetes._controller_manager import (
    controller_manager_config_map,
    controller_manager_container,
    controller_manager_volumes,
)
from spire_fabric.render.kubernetes._mysql import mysql_instance, mysql_tls_secret_name
from spire_fabric.render.kubernetes._resources import resources
from spire_fabric.topology import (
    DiskUpstreamAuthority,
    MySqlDatastore,
    Server,
    SpireUpstreamAuthority,
    Topology,
    api_node_port,
    bundle_publisher_namespaces,
    controller_manager_enabled,
    effective_datastore,
)

PATHS = RenderPaths.kubernetes()
COMPONENT = "server"
DATA_STORAGE = "1Gi"
SERVER_PRIORITY_CLASS = "system-cluster-critical"  # built in; as helm-charts-hardened offers


def server_config_map_name(server: Server) -> str:
    return f"{server.name}-config"


def upstream_ca_secret_name(server: Server) -> str:
    """Holds tls.crt / tls.key / bundle.crt of the server's intermediate, rendered by the
    secrets stage with the values the installer's CA hierarchy gives."""
    return f"{server.name}-upstream-ca"


def bundle_endpoint_secret_name(server: Server) -> str:
    return f"{server.name}-bundle-endpoint-tls"


def _needs_expand_env(server: Server) -> bool:
    ds = effective_datastore(server, "kubernetes")
    return isinstance(ds, MySqlDatastore) and "${" in ds.dsn


def render_server_objects(topology: Topology, server: Server) -> list[Obj]:
    """ConfigMaps first, then the Service and the StatefulSet, in apply order."""
    k = server.kubernetes
    assert k is not None
    out = [
        config_map(
            topology,
            k.cluster,
            server_config_map_name(server),
            k.namespace,
            {"server.conf": render_server_config(topology, server.name, PATHS)},
            server.name,
        )
    ]
    for ns in bundle_publisher_namespaces(topology, server):
        # Rendered empty so agents can mount it before the first publish; the
        # BundlePublisher owns bundle.crt (its own server-side-apply field manager).
        out.append(
            obj(
                "v1",
                "ConfigMap",
                meta(
                    topology, k.cluster, k.bundle_configmap, ns, app=server.name, component="bundle"
                ),
            )
        )
    if controller_manager_enabled(topology, server):
        out.append(controller_manager_config_map(topology, server))
    out += _services(topology, server)
    out.append(_stateful_set(topology, server))
    return out


def node_port_service_name(server: Server) -> str:
    return f"{server.name}-nodeports"


def _services(topology: Topology, server: Server) -> list[Obj]:
    """The in-cluster Service (ClusterIP: agents dial its DNS name), and, only when some
    port is published, a NodePort Service with exactly those ports. One NodePort Service
    for all would publish every port: Kubernetes gives a port without a nodePort a random
    one (the test clusters showed the API on one)."""
    k = server.kubernetes
    assert k is not None
    ports: list[Obj] = [
        {"name": "api", "port": server.ports.api, "protocol": "TCP", "targetPort": "api"}
    ]
    if server.bundle_endpoint is not None:
        ports.append({"name": "federation", "port": server.ports.federation,
                      "protocol": "TCP", "targetPort": "federation"})  # fmt: skip
    published = {"api": api_node_port(topology, server)}  # only for a caller outside
    if server.bundle_endpoint is not None:
        published["federation"] = k.node_ports.federation
    def service(name: str, kind: str, service_ports: list[Obj]) -> Obj:
        m = meta(topology, k.cluster, name, k.namespace, app=server.name, component=COMPONENT)
        selector = selector_labels(server.name, COMPONENT)
        return obj("v1", "Service", m,
                   spec={"type": kind, "selector": selector, "ports": service_ports})  # fmt: skip

    out = [service(server.name, "ClusterIP", ports)]
    node_ports = [{**p, "nodePort": n} for p in ports if (n := published.get(p["name"]))]
    if node_ports:
        out.append(service(node_port_service_name(server), "NodePort", node_ports))
    return out


def _server_container(topology: Topology, server: Server) -> Obj:
    args = ["-config", PATHS.server_config(server.name)]
    if _needs_expand_env(server):
        args.append("-expandEnv")
    ports: list[Obj] = [
        {"name": "api", "containerPort": server.ports.api, "protocol": "TCP"},
        {"name": "health", "containerPort": server.ports.health, "protocol": "TCP"},
    ]
    if server.bundle_endpoint is not None:
        ports.append(
            {"name": "federation", "containerPort": server.ports.federation, "protocol": "TCP"}
        )
    if server.ports.telemetry is not None:  # SPIRE's Prometheus telemetry (server.conf)
        ports.append(
            {"name": "telemetry", "containerPort": server.ports.telemetry, "protocol": "TCP"}
        )
    c: Obj = {
        "name": "spire-server",
        "image": topology.kubernetes.images.server,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
    }
    ds = effective_datastore(server, "kubernetes")
    if _needs_expand_env(server) and isinstance(ds, MySqlDatastore) and ds.instance:
        c["env"] = [
            {
                "name": "SPIRE_DB_PASSWORD",
                "valueFrom": {
                    "secretKeyRef": {"name": ds.instance.password_secret, "key": "password"}
                },
            }
        ]
    c["ports"] = ports
    c["livenessProbe"] = _liveness("/live", 15)
    c["readinessProbe"] = readiness_probe({"httpGet": {"path": "/ready", "port": "health"}})
    c["resources"] = resources("spire-server")
    c["securityContext"] = restricted_container()
    c["volumeMounts"] = _server_mounts(topology, server)
    return c


def _liveness(path: str, delay: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "health"},
        "initialDelaySeconds": delay,
        "periodSeconds": 10,
        "failureThreshold": 3,
    }


def _server_mounts(topology: Topology, server: Server) -> list[Obj]:
    mounts: list[Obj] = [
        {
            "name": "config",
            "mountPath": dirname(PATHS.server_config(server.name)),
            "readOnly": True,
        },
        {"name": "data", "mountPath": PATHS.server_data_dir(server.name)},
        {"name": "server-socket", "mountPath": dirname(PATHS.server_socket(server.name))},
    ]
    if mysql_instance(server) is not None:
        mounts.append(
            {
                "name": "mysql-ca",
                "mountPath": dirname(PATHS.mysql_ca(server.name)),
                "readOnly": True,
            }
        )
    ua = server.upstream_authority
    if isinstance(ua, DiskUpstreamAuthority):
        mounts.append(
            {"name": "upstream-ca", "mountPath": f"{K8S_ROOT}/upstream-ca", "readOnly": True}
        )
    elif isinstance(ua, SpireUpstreamAuthority):
        mounts.append(
            {
                "name": "upstream-agent",
                "mountPath": dirname(
                    PATHS.nested_upstream_socket(server.name, topology.agent(ua.agent))
                ),
                "readOnly": True,
            }
        )
    if server.bundle_endpoint is not None and server.bundle_endpoint.profile == "https_web":
        mounts.append(
            {
                "name": "bundle-endpoint-tls",
                "mountPath": dirname(PATHS.bundle_endpoint_cert(server.name)),
                "readOnly": True,
            }
        )
    return mounts


def _server_volumes(topology: Topology, server: Server) -> list[Obj]:
    volumes: list[Obj] = [
        {"name": "config", "configMap": {"name": server_config_map_name(server)}},
        # The API socket lives on an emptyDir so the controller-manager sidecar can reach it.
        {"name": "server-socket", "emptyDir": {}},
    ]
    inst = mysql_instance(server)
    if inst is not None:
        # only the CA certificate of MySQL's TLS Secret: its key stays with MySQL
        volumes.append(
            {
                "name": "mysql-ca",
                "secret": {
                    "secretName": mysql_tls_secret_name(inst),
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    "defaultMode": 0o440,
                },
            }
        )
    ua = server.upstream_authority
    if isinstance(ua, DiskUpstreamAuthority):
        volumes.append(
            {
                "name": "upstream-ca",
                "secret": {"secretName": upstream_ca_secret_name(server), "defaultMode": 0o440},
            }
        )
    elif isinstance(ua, SpireUpstreamAuthority):
        agent = topology.agent(ua.agent)
        volumes.append(workload_socket_volume(topology, agent, "upstream-agent"))
    if server.bundle_endpoint is not None and server.bundle_endpoint.profile == "https_web":
        volumes.append(
            {
                "name": "bundle-endpoint-tls",
                "secret": {"secretName": bundle_endpoint_secret_name(server), "defaultMode": 0o440},
            }
        )
    return volumes


def _stateful_set(topology: Topology, server: Server) -> Obj:
    """A StatefulSet for the PVC that keeps keys.json (and SQLite, when used) across
    restarts. One replica: the disk KeyManager is not shared between replicas."""
    k = server.kubernetes
    assert k is not None
    labels = selector_labels(server.name, COMPONENT)
    containers = [_server_container(topology, server)]
    volumes = _server_volumes(topology, server)
    share_processes = False
    if controller_manager_enabled(topology, server):
        containers.append(controller_manager_container(topology, server))
        volumes += controller_manager_volumes(server)
        # With audit_log_enabled SPIRE serves its socket through a peer tracker that
        # looks the caller up in /proc by the PID the kernel reports: a sidecar in its own
        # PID namespace is reported as PID 0 and every call of the controller manager
        # fails, so no entry is made (on the test clusters no workload got an SVID; SPIRE
        # 1.13.3 pkg/server/endpoints/endpoints_posix.go). helm-charts-hardened
        # shares the namespace always; we only when the audit log needs it, as the
        # sidecar can then see the server's processes.
        share_processes = server.audit_log_enabled
    pod_spec: Obj = {
        # Evicted last under node pressure: without the server no SVID is renewed. The
        # pod keeps its token (k8s_psat TokenReview, BundlePublisher, controller manager).
        "priorityClassName": SERVER_PRIORITY_CLASS,
        "serviceAccountName": k.service_account,
        "securityContext": restricted_pod(SPIRE_UID),
        "containers": containers,
        "volumes": volumes,
    }
    if share_processes:
        pod_spec["shareProcessNamespace"] = True
    return obj(
        "apps/v1",
        "StatefulSet",
        meta(topology, k.cluster, server.name, k.namespace, app=server.name, component=COMPONENT),
        spec={
            "replicas": 1,
            "serviceName": server.name,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            # The claims are part of the server: labelled like it (so `down` finds them)
            # and deleted with it rather than left behind holding a volume.
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete",
                "whenScaled": "Retain",
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {
                        "name": "data",
                        "labels": meta(
                            topology, k.cluster, "data", app=server.name, component=COMPONENT
                        )["labels"],
                    },
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": DATA_STORAGE}},
                    },
                }
            ],
        },
    )
