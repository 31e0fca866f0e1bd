"""The MySQL a server's datastore points at: Secret, PVC, Service, Deployment.

The Secret is rendered by the secrets stage (``_secrets.py``): without values it has no data
(a password cannot be both secret and part of a deterministic golden file); the installer
renders it with the values before the server starts.
"""

from __future__ import annotations

from spire_fabric.render.kubernetes._common import (
    MYSQL_UID,
    Obj,
    meta,
    obj,
    restricted_container,
    restricted_pod,
    secret,
    selector_labels,
)
from spire_fabric.render.kubernetes._resources import resources
from spire_fabric.topology import (
    MySqlDatastore,
    MySqlInstance,
    Server,
    Topology,
    effective_datastore,
)

COMPONENT = "database"
PORT = 3306


def mysql_instance(server: Server) -> MySqlInstance | None:
    ds = effective_datastore(server, "kubernetes")
    return ds.instance if isinstance(ds, MySqlDatastore) else None


def mysql_secret(
    topology: Topology,
    server: Server,
    *,
    password: str | None = None,
    root_password: str | None = None,
) -> Obj:
    """The Secret both MySQL and spire-server read (key ``password``; MySQL also needs
    ``root-password``). Without values it is the skeleton the manifests carry."""
    k = server.kubernetes
    inst = mysql_instance(server)
    assert k is not None and inst is not None
    values = {"password": password, "root-password": root_password}
    data = {key: v.encode() for key, v in values.items() if v is not None}
    return secret(topology, k.cluster, inst.password_secret, k.namespace,
                  app=inst.service, component=COMPONENT, data=data)  # fmt: skip


def render_mysql(topology: Topology, server: Server) -> list[Obj]:
    inst = mysql_instance(server)
    if inst is None:
        return []
    k = server.kubernetes
    assert k is not None
    m = meta(topology, k.cluster, inst.service, k.namespace, app=inst.service, component=COMPONENT)
    labels = selector_labels(inst.service, COMPONENT)
    pvc = obj(
        "v1",
        "PersistentVolumeClaim",
        meta(
            topology,
            k.cluster,
            f"{inst.service}-data",
            k.namespace,
            app=inst.service,
            component=COMPONENT,
        ),
        spec={
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": inst.storage}},
        },
    )
    service = obj(
        "v1",
        "Service",
        m,
        spec={
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "mysql", "port": PORT, "protocol": "TCP", "targetPort": "mysql"}],
        },
    )

    def secret_env(name: str, key: str) -> Obj:
        return {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": inst.password_secret, "key": key}},
        }

    tcp = {"tcpSocket": {"port": "mysql"}, "periodSeconds": 10}
    container: Obj = {
        "name": "mysql",
        "image": inst.image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "MYSQL_DATABASE", "value": inst.database},
            {"name": "MYSQL_USER", "value": inst.user},
            secret_env("MYSQL_PASSWORD", "password"),
            secret_env("MYSQL_ROOT_PASSWORD", "root-password"),
        ],
        "ports": [{"name": "mysql", "containerPort": PORT, "protocol": "TCP"}],
        "livenessProbe": {**tcp, "initialDelaySeconds": 30},
        "readinessProbe": {**tcp, "initialDelaySeconds": 5},
        "resources": resources("mysql"),
        "securityContext": restricted_container(),
        # A read-only root needs the few places mysqld and its entrypoint write to.
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/mysql"},
            {"name": "run", "mountPath": "/var/run/mysqld"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    deployment = obj(
        "apps/v1",
        "Deployment",
        m,
        spec={
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one ReadWriteOnce volume, one mysqld
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,  # mysqld never calls the API
                    "securityContext": restricted_pod(MYSQL_UID),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "data",
                            "persistentVolumeClaim": {"claimName": f"{inst.service}-data"},
                        },
                        {"name": "run", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    )
    return [pvc, service, deployment]  # its Secret is in the secrets stage (_secrets.py)
