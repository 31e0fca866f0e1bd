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
    server_key_manager,
    server_replicas,
    shared_datastore,
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
    if server_replicas(server, "kubernetes") > 1:
        out.append(_disruption_budget(topology, server))
    return out


def _disruption_budget(topology: Topology, server: Server) -> Obj:
    """A drain or a node upgrade takes at most one replica at a time, so the Service
    always has one serving. ``maxUnavailable`` rather than ``minAvailable: N-1``: it keeps
    meaning "one at a time" when the count changes."""
    k = server.kubernetes
    assert k is not None
    return obj(
        "policy/v1",
        "PodDisruptionBudget",
        meta(topology, k.cluster, server.name, k.namespace, app=server.name, component=COMPONENT),
        spec={
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(server.name, COMPONENT)},
        },
    )


def keys_on_volume(server: Server) -> bool:
    """Whether the server needs a volume of its own per replica: disk keys (keys.json)
    or SQLite live in its data dir. Memory keys on a shared SQL datastore leave nothing
    there worth keeping, and a ReadWriteOnce claim would pin the replica to the node it was
    bound on, so it could not come back elsewhere when that node dies (spiffe/spire#5174)."""
    return server_key_manager(server, "kubernetes") == "disk" or not shared_datastore(
        server, "kubernetes"
    )


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
    # SPIRE's /ready is "serving the current bundle": it passes only when the server fetches
    # its bundle through its own API (GetBundle on its socket, from the datastore every
    # replica shares), the datastore lists bundles, and its CA signs a test SVID
    # (SPIRE 1.13.3 pkg/server/server.go CheckHealth, pkg/server/ca/ca_health.go,
    # pkg/server/datastore/datastore_health.go). So the Service sends agents only to a
    # replica that can sign with a CA chained to that bundle.
    if _mints_keys_at_start(server):
        # Asked through the gate, which asks /ready first, then whether agents could lack
        # the replica's new JWT key (:func:`readiness_gate_container`). On this container,
        # not the gate's: a server restarted in its pod is unready until the gate has
        # seen its new key.
        c["readinessProbe"] = readiness_probe(
            {"httpGet": {"path": "/ready", "port": READINESS_GATE_PORT}, "timeoutSeconds": 3}
        )
    else:
        c["readinessProbe"] = readiness_probe({"httpGet": {"path": "/ready", "port": "health"}})
    c["resources"] = resources("spire-server")
    c["securityContext"] = restricted_container()
    c["volumeMounts"] = _server_mounts(topology, server)
    return c


# How long a replica that minted a new JWT key at its start stays unready while agents
# exist: the key is in the shared bundle from the moment it is minted, and agents fetch the
# bundle every 5 s (SPIRE's default sync_interval, kept on Kubernetes), then push it to
# their workloads at once.
NEW_KEY_PROPAGATION_SECONDS = 15
# Where the readiness gate listens in the server's pod (SPIRE's own ports are 8080, 8081,
# 8443 and 9988; the controller manager's 8083).
READINESS_GATE_PORT = 8089


def readiness_gate_container(topology: Topology, server: Server) -> Obj:
    """`python -m spire_fabric.server.readiness` beside a replica that mints a JWT key at
    start: it lets the replica into the Service once no agent can lack that key, the full
    15 s while agents exist, 2 s when none does (a fresh ``up``: the servers' step took 17 s
    of a 58 s ``up`` with a fixed delay). It runs in the workload image, which has the SDK."""
    probe = {"httpGet": {"path": "/live", "port": READINESS_GATE_PORT}, "periodSeconds": 10}
    return {
        "name": "readiness-gate",
        "image": topology.kubernetes.images.workload,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "spire_fabric.server.readiness"],
        "args": [
            f"--socket={PATHS.server_socket(server.name)}",
            f"--health-port={server.ports.health}",
            f"--port={READINESS_GATE_PORT}",
            f"--delay={NEW_KEY_PROPAGATION_SECONDS}",
        ],
        "ports": [{"name": "ready-gate", "containerPort": READINESS_GATE_PORT, "protocol": "TCP"}],
        "livenessProbe": probe,
        "resources": resources("readiness-gate"),
        "securityContext": restricted_container(),
        "volumeMounts": [
            {
                "name": "server-socket",
                "mountPath": dirname(PATHS.server_socket(server.name)),
                "readOnly": True,
            }
        ],
    }


def _mints_keys_at_start(server: Server) -> bool:
    """A replica with memory keys, one of several: every start (a crash, a node lost, a
    rolling change) activates a new JWT key at once (SPIRE 1.13.3 pkg/server/ca/rotator,
    rotateJWTKey), unlike a rotation, where a key is published long before it signs.
    Were the replica Ready (in the Service) at once, an agent could get a JWT-SVID signed
    with that key before verifiers' bundles hold it, and it would be refused; failover
    drill (c) saw one. Kept out of the Service until the key has reached every agent (its
    readiness gate), it signs nothing before that, while the other replicas serve. A
    single replica is not delayed: there is no other to serve meanwhile."""
    return (
        server_replicas(server, "kubernetes") > 1
        and server_key_manager(server, "kubernetes") == "memory"
    )


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
    if not keys_on_volume(server):
        volumes.append({"name": "data", "emptyDir": {}})
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
    """A StatefulSet, for any replica count. With disk keys each replica gets its own
    claim (``data-<server>-<i>``), so replicas never share keys.json (spiffe/spire#3582)
    and each keeps its own across restarts; a Deployment can only give every replica the
    same claim, or none. Its stable pod names also let `verify` and `rotate` address each
    replica through its own API. With memory keys on a shared datastore there is no claim
    (:func:`keys_on_volume`)."""
    k = server.kubernetes
    assert k is not None
    labels = selector_labels(server.name, COMPONENT)
    containers = [_server_container(topology, server)]
    if _mints_keys_at_start(server):
        containers.append(readiness_gate_container(topology, server))
    volumes = _server_volumes(topology, server)
    if controller_manager_enabled(topology, server):
        containers.append(controller_manager_container(topology, server))
        volumes += controller_manager_volumes(server)
    # With audit_log_enabled SPIRE serves its socket through a peer tracker that looks the
    # caller up in /proc by the PID the kernel reports: a sidecar in its own PID namespace
    # is reported as PID 0 and every call of it fails (the controller manager made no
    # entry: on the test clusters no workload got an SVID; SPIRE 1.13.3
    # pkg/server/endpoints/endpoints_posix.go). helm-charts-hardened shares the namespace
    # always; we only when the audit log needs it for a sidecar on the socket (the
    # controller manager, the readiness gate), as the sidecars can then see the server's
    # processes.
    share_processes = server.audit_log_enabled and len(containers) > 1
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
    replicas = server_replicas(server, "kubernetes")
    if replicas > 1:
        # Preferred, not required: a cluster with fewer nodes than replicas still runs
        # them all; the downstream test cluster's 3 nodes take one replica each.
        pod_spec["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": labels},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    spec: Obj = {
        "replicas": replicas,
        "serviceName": server.name,
        "selector": {"matchLabels": labels},
    }
    if replicas > 1:
        # Replicas start together (no ordering between them: each has its own keys and
        # they meet only in the datastore); rolling updates still go one pod at a time.
        spec["podManagementPolicy"] = "Parallel"
    spec["template"] = {"metadata": {"labels": labels}, "spec": pod_spec}
    if keys_on_volume(server):
        # The claims are part of the server: labelled like it (so `down` finds them) and
        # deleted with it rather than left behind holding a volume.
        spec["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": "Delete",
            "whenScaled": "Retain",
        }
        labels_of_claim = meta(topology, k.cluster, "data", app=server.name, component=COMPONENT)
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data", "labels": labels_of_claim["labels"]},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": DATA_STORAGE}},
                },
            }
        ]
    return obj(
        "apps/v1",
        "StatefulSet",
        meta(topology, k.cluster, server.name, k.namespace, app=server.name, component=COMPONENT),
        spec=spec,
    )
