"""The MySQL a server's datastore points at: Secrets, PVC, Service, Deployment.

The Secrets are rendered by the secrets stage (``_secrets.py``): without values they have no
data (a password cannot be both secret and part of a deterministic golden file); the
installer renders them with the values before the server starts.

Secrets reach mysqld as files, never as environment: the passwords through the official
images' ``MYSQL_PASSWORD_FILE`` / ``MYSQL_ROOT_PASSWORD_FILE`` (read by the entrypoints of
both ``mysql`` and ``mariadb``, so ``--image mysql=mariadb:…`` works too, and by the test
clusters' own MariaDB image), the TLS certificate and key as ``--ssl-*`` arguments, which
both entrypoints pass on to the server. Environment is inherited by every child process and
shown by ``kubectl describe``; a file of a read-only Secret volume is readable by the pod's
group alone.

TLS: mysqld serves a certificate for its Service name, issued by the installer's datastore CA
(whose key stays on the installer's machine), and refuses plain connections
(``require_secure_transport``); the SPIRE server verifies it against that CA
(``root_ca_path``). SPIRE itself could keep these certificates fresh one day (a files-mode
helper writing an X.509-SVID for the Service name), but not the server's own datastore: the
server must reach its database before it can issue anything (chicken and egg).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from spire_fabric.render.kubernetes._common import (
    MYSQL_UID,
    TLS_SECRET,
    Obj,
    meta,
    obj,
    readiness_probe,
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
TLS_DIGEST_ANNOTATION = "spire-fabric.io/tls-cert-sha256"
SECRETS_DIR = "/run/secrets/mysql"  # the password Secret as files, in the MySQL container
TLS_DIR = "/run/secrets/mysql-tls"  # the TLS Secret (tls.crt, tls.key, ca.crt)
# mysqld's options for TLS, passed as container arguments: the official images' entrypoints
# and ours hand arguments that start with "-" to the server.
TLS_ARGS = (
    f"--ssl-cert={TLS_DIR}/tls.crt",
    f"--ssl-key={TLS_DIR}/tls.key",
    f"--ssl-ca={TLS_DIR}/ca.crt",
    "--require-secure-transport=ON",
)
# A Secret volume's files are owned by root; with the pod's fsGroup the kubelet makes them
# group-readable (it ORs 0440 into any mode), so 0440 is what a 0400 would become anyway:
# readable by mysqld's group alone.
SECRET_MODE = 0o440


@dataclass(frozen=True)
class DatastoreTlsPem:
    """One server's MySQL certificate as PEM: its certificate, its key, and the datastore CA
    that issued it (what the SPIRE server verifies MySQL with)."""

    cert: bytes
    key: bytes
    ca: bytes


def mysql_instance(server: Server) -> MySqlInstance | None:
    ds = effective_datastore(server, "kubernetes")
    return ds.instance if isinstance(ds, MySqlDatastore) else None


def mysql_tls_secret_name(inst: MySqlInstance) -> str:
    """The ``kubernetes.io/tls`` Secret of MySQL's server certificate (and ``ca.crt``, the
    installer's datastore CA that SPIRE verifies it with)."""
    return f"{inst.service}-tls"


def mysql_dns_names(server: Server) -> tuple[str, ...]:
    """The names a client may dial MySQL by, all in its server certificate; the DSN uses
    ``<service>.<namespace>.svc``, and the driver checks the certificate against its host."""
    inst = mysql_instance(server)
    k = server.kubernetes
    assert inst is not None and k is not None
    svc = f"{inst.service}.{k.namespace}"
    return (f"{svc}.svc", f"{svc}.svc.cluster.local", svc, inst.service)


def mysql_tls_secret(
    topology: Topology,
    server: Server,
    *,
    cert: bytes | None = None,
    key: bytes | None = None,
    ca: bytes | None = None,
) -> Obj:
    """MySQL's certificate chain, key and the CA that issued it (a skeleton without them)."""
    k = server.kubernetes
    inst = mysql_instance(server)
    assert k is not None and inst is not None
    data = None if cert is None or key is None or ca is None else {
        "tls.crt": cert, "tls.key": key, "ca.crt": ca}  # fmt: skip
    return secret(topology, k.cluster, mysql_tls_secret_name(inst), k.namespace,
                  app=inst.service, component=COMPONENT, data=data,
                  secret_type=TLS_SECRET)  # fmt: skip


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


def render_mysql(
    topology: Topology, server: Server, tls: DatastoreTlsPem | None = None
) -> list[Obj]:
    """PVC, Service and Deployment. With ``tls`` (the certificate `up` put in the TLS
    Secret) the pod template names its digest: mysqld reads its certificate only at start,
    so a new certificate must roll it."""
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

    tcp = {"tcpSocket": {"port": "mysql"}, "periodSeconds": 10}  # liveness
    container: Obj = {
        "name": "mysql",
        "image": inst.image,
        "imagePullPolicy": "IfNotPresent",
        "args": list(TLS_ARGS),
        "env": [
            {"name": "MYSQL_DATABASE", "value": inst.database},
            {"name": "MYSQL_USER", "value": inst.user},
            {"name": "MYSQL_PASSWORD_FILE", "value": f"{SECRETS_DIR}/password"},
            {"name": "MYSQL_ROOT_PASSWORD_FILE", "value": f"{SECRETS_DIR}/root-password"},
        ],
        "ports": [{"name": "mysql", "containerPort": PORT, "protocol": "TCP"}],
        "livenessProbe": {**tcp, "initialDelaySeconds": 30},
        "readinessProbe": readiness_probe({"tcpSocket": {"port": "mysql"}}),
        "resources": resources("mysql"),
        "securityContext": restricted_container(),
        # A read-only root needs the few places mysqld and its entrypoint write to.
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/mysql"},
            {"name": "run", "mountPath": "/var/run/mysqld"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "passwords", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        ],
    }
    template_meta: Obj = {"labels": labels}
    if tls is not None:
        digest = hashlib.sha256(tls.cert).hexdigest()[:16]
        template_meta["annotations"] = {TLS_DIGEST_ANNOTATION: digest}
    deployment = obj(
        "apps/v1",
        "Deployment",
        m,
        spec={
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one ReadWriteOnce volume, one mysqld
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": template_meta,
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
                        {
                            "name": "passwords",
                            "secret": {
                                "secretName": inst.password_secret,
                                "defaultMode": SECRET_MODE,
                            },
                        },
                        {
                            "name": "tls",
                            "secret": {
                                "secretName": mysql_tls_secret_name(inst),
                                "defaultMode": SECRET_MODE,
                            },
                        },
                    ],
                },
            },
        },
    )
    return [pvc, service, deployment]  # its Secrets are in the secrets stage (_secrets.py)
