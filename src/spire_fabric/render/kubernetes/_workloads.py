"""Workloads: a ServiceAccount always (the identity is registered for it), and a Deployment
and (when it serves) a Service for a workload that says how to run.

What runs comes from the workload's description: ``kubernetes.command`` if set, else
``python -m <run.module> <run.args>`` with the placeholders resolved for the cluster
(``{url:NAME}`` is that workload's Service). The image is ``kubernetes.image`` or the
topology's ``images.workload``. The Workload API socket arrives through the agent's SPIFFE
CSI driver, so the pod stays Pod Security "restricted".
"""

from __future__ import annotations

from collections.abc import Callable

from spire_fabric.render._paths import RenderPaths
from spire_fabric.render._sidecars import (
    SVID_SUBDIR,
    SidecarPlace,
    client_address,
    server_sidecar_app_port,
    sidecar_command,
)
from spire_fabric.render.kubernetes._common import (
    LABEL_WORKLOAD,
    WORKLOAD_SOCKET_DIR,
    WORKLOAD_UID,
    Obj,
    agent_node_selector,
    meta,
    obj,
    readiness_probe,
    restricted_container,
    restricted_pod,
    secret,
    selector_labels,
    service_account,
    workload_socket_address,
    workload_socket_volume,
)
from spire_fabric.render.kubernetes._resources import resources
from spire_fabric.topology import (
    Placeholder,
    Sidecar,
    Topology,
    Workload,
    expand_placeholders,
    workload_node_port,
    workload_uses_files,
)
from spire_fabric.workload import SOCKET_ENV

COMPONENT = "workload"
PATHS = RenderPaths.kubernetes()


def workload_cluster(topology: Topology, w: Workload) -> str:
    """A workload runs where its agent runs: only that agent can attest it."""
    agent = topology.agent(w.agent)
    assert agent.kubernetes is not None
    return agent.kubernetes.cluster


def _service_port(w: Workload) -> int | None:
    k = w.kubernetes
    if k is not None and k.service_port is not None:
        return k.service_port
    return w.run.port if w.run else None


def scraped_metrics_port(topology: Topology, w: Workload) -> int | None:
    """The port Prometheus scrapes the workload's /metrics at, when the topology monitors."""
    if topology.monitoring is None or w.run is None:
        return None
    return w.run.metrics_port


# where a workload's managed files ({files}) are: its `<name>-files` Secret, read-only
FILES_DIR = "/etc/spire-fabric/files"


def workload_files_secret_name(w: Workload) -> str:
    """The Secret of a workload's managed files (``Deployment.workload_file``)."""
    return f"{w.name}-files"


def uses_files(w: Workload) -> bool:
    """Whether the workload's run description names its managed files ({files})."""
    return workload_uses_files(w)


def workload_files_secret(
    topology: Topology, w: Workload, files: dict[str, bytes] | None = None
) -> Obj:
    """The Secret: rendered without data by `up` (the installer never owns a file's
    content), with ``files`` by ``Deployment.put_workload_file`` as its own field manager,
    so an `up` leaves the files alone."""
    k = w.kubernetes
    assert k is not None
    return secret(topology, workload_cluster(topology, w), workload_files_secret_name(w),
                  k.namespace, app=w.name, component=COMPONENT, data=files)  # fmt: skip


def _placeholder_value(topology: Topology, w: Workload) -> Callable[[Placeholder], str]:
    def value(p: Placeholder) -> str:
        target = topology.workload(p.workload) if p.workload else w
        if p.key == "files":
            return FILES_DIR
        if p.key == "svid":
            return SVID_DIR
        if p.key == "client":
            return client_address(w)
        if p.key == "metrics_listen":
            # on the pod's address only for Prometheus, which the NetworkPolicy alone admits
            # to it (plain HTTP); without monitoring nothing scrapes it: loopback
            host = "0.0.0.0" if topology.monitoring is not None else "127.0.0.1"
            return f"{host}:{target.run.metrics_port if target.run else 0}"
        port = _service_port(target)
        if p.key == "spiffe_id":
            return target.spiffe_id
        if p.key == "port":
            return str(port)
        app_port = server_sidecar_app_port(target)
        if p.key == "listen" and app_port is not None:
            return f"127.0.0.1:{app_port}"  # the app behind its server sidecar
        if p.key == "listen":
            return f"0.0.0.0:{port}"
        namespace = target.kubernetes.namespace if target.kubernetes else "default"
        return f"https://{target.name}.{namespace}.svc:{port}"  # url

    return value


# where a workload with storage finds its volume claim (and works)
DATA_DIR = "/var/lib/workload"
# a files-mode sidecar's SVID files, on an emptyDir the app's container mounts too
SVID_DIR = f"/run/spire-fabric/{SVID_SUBDIR}"


def _sidecar_place(topology: Topology, w: Workload) -> SidecarPlace:
    targets = {}
    for t in topology.workloads:
        port = _service_port(t)
        if t.kubernetes is not None and port is not None:
            targets[t.name] = f"{t.name}.{t.kubernetes.namespace}.svc:{port}"
    return SidecarPlace(
        socket_address=workload_socket_address(topology.agent(w.agent)),
        public_host="0.0.0.0", status_host="0.0.0.0", ghostunnel="ghostunnel",
        python=("python",), svid_dir=SVID_DIR, public_port=_service_port(w),
        target_addresses=targets,
    )  # fmt: skip


def _sidecar_container(topology: Topology, w: Workload, s: Sidecar,
                       place: SidecarPlace) -> Obj:
    """A sidecar: same restrictions as the app, the agent's socket read-only; a server
    sidecar owns the pod's `https` port (the app listens on 127.0.0.1 only), files mode
    shares the SVID emptyDir with the app."""
    image = (topology.kubernetes.images.workload if s.mode == "files"
             else topology.kubernetes.images.ghostunnel)  # fmt: skip
    c: Obj = {"name": s.name, "image": image, "imagePullPolicy": "IfNotPresent",
              "command": sidecar_command(topology, w, s, place)}
    if s.mode == "files":
        c["env"] = [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                    {"name": "PYTHONUNBUFFERED", "value": "1"}]
    if s.mode == "server":
        c["ports"] = [{"name": "https", "containerPort": place.public_port, "protocol": "TCP"}]
    if s.status_port is not None:
        path = "/ready" if s.mode == "files" else "/_status"
        c["readinessProbe"] = {"httpGet": {"path": path, "port": s.status_port},
                               "periodSeconds": 10}
    elif s.mode == "server":
        c["readinessProbe"] = {"tcpSocket": {"port": "https"}, "periodSeconds": 10}
    c["resources"] = resources("sidecar")
    c["securityContext"] = restricted_container()
    c["volumeMounts"] = [
        {"name": "spiffe-workload-api", "mountPath": WORKLOAD_SOCKET_DIR, "readOnly": True}]
    if s.mode == "files":
        c["volumeMounts"].append({"name": "svid", "mountPath": SVID_DIR})
    return c


def workload_image(topology: Topology, w: Workload) -> str:
    """``kubernetes.image``, else the topology's image of ``kubernetes.image_role``."""
    k = w.kubernetes
    if k is not None and k.image:
        return k.image
    images = topology.kubernetes.images
    return images.nginx if k is not None and k.image_role == "nginx" else images.workload


def workload_command(topology: Topology, w: Workload) -> list[str] | None:
    """The container's argv, or None when the topology does not say how to run it."""
    k, run = w.kubernetes, w.run
    value = _placeholder_value(topology, w)
    if k is not None and k.command:
        return [expand_placeholders(t, value) for t in k.command]
    if run is None:
        return None
    base = ["python", "-m", run.module] if run.module else list(run.command)
    return [expand_placeholders(t, value) for t in (*base, *run.args)]


def render_workload(topology: Topology, w: Workload) -> list[Obj]:
    k = w.kubernetes
    assert k is not None
    cluster = workload_cluster(topology, w)
    command = workload_command(topology, w)
    if command is None:  # registered only: the user's own pods run as this account
        return [service_account(topology, cluster, k.service_account, k.namespace)]
    agent = topology.agent(w.agent)
    labels = selector_labels(w.name, COMPONENT)
    value = _placeholder_value(topology, w)
    extra_env = [
        {"name": n, "value": expand_placeholders(v, value)}
        for n, _, v in (e.partition("=") for e in (w.run.env if w.run else ()))
    ]
    container: Obj = {
        "name": w.name,
        "image": workload_image(topology, w),
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        # The root is read-only; like the local target's per-workload directory, the
        # working directory is where a workload may keep files (the API's SQLite file):
        # its volume claim when the topology gives it storage, else the /tmp emptyDir,
        # which survives container restarts, not a pod's replacement.
        "workingDir": DATA_DIR if k.storage else "/tmp",
        "env": [
            {
                "name": SOCKET_ENV,
                "value": workload_socket_address(agent),
            },
            {"name": "SPIFFE_ID", "value": w.spiffe_id},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            *extra_env,
        ],
    }
    served_by_sidecar = any(s.mode == "server" for s in w.sidecars)
    if k.service_port is not None and not served_by_sidecar:
        container["ports"] = [{"name": "https", "containerPort": k.service_port, "protocol": "TCP"}]
        container["readinessProbe"] = readiness_probe({"tcpSocket": {"port": "https"}})
    metrics = scraped_metrics_port(topology, w)
    if metrics is not None:  # Prometheus scrapes it (its headless Service names the port)
        container.setdefault("ports", []).append(
            {"name": "metrics", "containerPort": metrics, "protocol": "TCP"})
    container["resources"] = resources("workload")
    container["securityContext"] = restricted_container()
    container["volumeMounts"] = [
        {"name": "spiffe-workload-api", "mountPath": WORKLOAD_SOCKET_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if k.storage:
        container["volumeMounts"].append({"name": "data", "mountPath": DATA_DIR})
    if uses_files(w):
        mount = {"name": "files", "mountPath": FILES_DIR, "readOnly": True}
        container["volumeMounts"].append(mount)
    files_sidecars = [s for s in w.sidecars if s.mode == "files"]
    if files_sidecars:
        container["volumeMounts"].append({"name": "svid", "mountPath": SVID_DIR})
    place = _sidecar_place(topology, w)
    pod_spec: Obj = {
        # The account names the workload to the agent's k8s attestor (the kubelet says
        # which account a pod runs as); the workload itself never calls the API.
        "automountServiceAccountToken": False,
        "serviceAccountName": k.service_account,
        "securityContext": restricted_pod(WORKLOAD_UID),
        "containers": [container, *(_sidecar_container(topology, w, s, place)
                                    for s in w.sidecars)],
        "volumes": [
            workload_socket_volume(topology, agent, "spiffe-workload-api"),
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if files_sidecars:
        # the SVID files live in memory only; the helper's key never touches the node's disk
        pod_spec["volumes"].append({"name": "svid", "emptyDir": {"medium": "Memory",
                                                                 "sizeLimit": "1Mi"}})
        if any(s.signal for s in files_sidecars):
            # the helper signals the app's pid: one PID namespace for the pod's containers
            pod_spec["shareProcessNamespace"] = True
    claim = f"{w.name}-data"
    if uses_files(w):
        # the kubelet swaps the files in place when the Secret changes (no subPath), so
        # the workload sees a new file without a restart; its group may read (fsGroup)
        pod_spec["volumes"].append({"name": "files", "secret": {
            "secretName": workload_files_secret_name(w), "defaultMode": 0o440}})  # fmt: skip
    if k.storage:
        pod_spec["volumes"].append(
            {"name": "data", "persistentVolumeClaim": {"claimName": claim}}
        )
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
                "template": {
                    "metadata": {"labels": {**labels, LABEL_WORKLOAD: w.name}},
                    "spec": pod_spec,
                },
                # one ReadWriteOnce claim: the old pod lets go before the new one mounts it
                **({"strategy": {"type": "Recreate"}} if k.storage else {}),
            },
        ),
    ]
    if uses_files(w):
        out.insert(1, workload_files_secret(topology, w))
    if k.storage:
        out.insert(1, obj(
            "v1",
            "PersistentVolumeClaim",
            meta(topology, cluster, claim, k.namespace, app=w.name, component=COMPONENT),
            spec={
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": k.storage}},
            },
        ))  # fmt: skip
    if k.service_port is not None:
        port: Obj = {
            "name": "https",
            "port": k.service_port,
            "protocol": "TCP",
            "targetPort": "https",
        }
        node_port = workload_node_port(w)
        if node_port is not None:
            port["nodePort"] = node_port
        out.append(
            obj(
                "v1",
                "Service",
                meta(topology, cluster, w.name, k.namespace, app=w.name, component=COMPONENT),
                spec={
                    "type": "NodePort" if node_port is not None else "ClusterIP",
                    "selector": labels,
                    "ports": [port],
                },
            )
        )
    return out
