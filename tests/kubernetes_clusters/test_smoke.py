"""Smoke tests of each test cluster: the node, the workload kinds SPIRE needs, DNS, tokens,
and the one path between the clusters (a NodePort on the other node's address)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kubernetes_clusters._kube import DOWNSTREAM, PYTHON_IMAGE, SMOKE_NS, UPSTREAM, Kube

NODE_PORT = 30999
# kube-proxy programs a new Service's endpoints about a second after they are ready; until
# then the node rejects the connection. Clients retry for a bounded time.
RETRY = (
    "import socket, time, urllib.request\n"
    "def retry(call, seconds=20):\n"
    "    deadline = time.monotonic() + seconds\n"
    "    while True:\n"
    "        try:\n"
    "            return call()\n"
    "        except OSError:\n"
    "            if time.monotonic() > deadline:\n"
    "                raise\n"
    "            time.sleep(0.5)\n"
)

ECHO = """
import http.server, os, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (os.environ['CLUSTER'] + ' ' + socket.gethostname()).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()
"""


def _echo_container(kube: Kube, **extra: Any) -> dict[str, Any]:
    return {
        "name": "echo", "image": PYTHON_IMAGE, "imagePullPolicy": "Never",
        "command": ["python3", "-u", "-c", extra.pop("script", ECHO)],
        "env": [{"name": "CLUSTER", "value": kube.name}],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        **extra,
    }


def _workloads(kube: Kube) -> list[dict[str, Any]]:
    labels = {"app": "echo"}
    volumes = Path(kube.info["dir"]) / "volumes"
    write_pid1 = (
        "import pathlib\n"
        "pathlib.Path('/host/pid1').write_bytes(pathlib.Path('/proc/1/cmdline').read_bytes())\n"
        + ECHO
    )
    write_data = (
        "import pathlib, socket\n"
        "pathlib.Path('/data/hello').write_text(socket.gethostname())\n" + ECHO
    )
    return [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smoke-pod"},
         "spec": {"terminationGracePeriodSeconds": 0, "containers": [_echo_container(kube)]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"terminationGracePeriodSeconds": 0,
                      "containers": [_echo_container(kube)]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo-nodeport"},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"port": 80, "targetPort": 8080, "nodePort": NODE_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "hostpid"},
         "spec": {"selector": {"matchLabels": {"app": "hostpid"}}, "template": {
             "metadata": {"labels": {"app": "hostpid"}},
             "spec": {"hostPID": True, "terminationGracePeriodSeconds": 0,
                      "containers": [_echo_container(
                          kube, script=write_pid1,
                          volumeMounts=[{"name": "host", "mountPath": "/host"}])],
                      "volumes": [{"name": "host", "hostPath": {
                          "path": str(volumes / "daemonset"),
                          "type": "DirectoryOrCreate"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"clusterIP": "None", "selector": {"app": "web"},
                  "ports": [{"port": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
         "spec": {"serviceName": "web", "replicas": 1,
                  "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"terminationGracePeriodSeconds": 0,
                                        "containers": [_echo_container(
                                            kube, script=write_data,
                                            volumeMounts=[{"name": "data",
                                                           "mountPath": "/data"}])]}},
                  "volumeClaimTemplates": [{
                      "metadata": {"name": "data"},
                      "spec": {"accessModes": ["ReadWriteOnce"],
                               "resources": {"requests": {"storage": "100Mi"}}}}]}},
    ]


_APPLIED: set[str] = set()


def _ensure_workloads(kube: Kube) -> Kube:
    from kubernetes import utils

    if kube.name not in _APPLIED:
        for doc in _workloads(kube):
            utils.create_from_dict(kube.api, doc, namespace=SMOKE_NS)
        _APPLIED.add(kube.name)
    return kube


@pytest.fixture(scope="session")
def workloads(kube: Kube) -> Kube:
    return _ensure_workloads(kube)


def test_node_is_ready(kube: Kube) -> None:
    nodes = kube.core.list_node().items
    assert [n.metadata.name for n in nodes] == [f"{kube.name.split('stream')[0]}stream-node"]
    (node,) = nodes
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    addresses = {a.type: a.address for a in node.status.addresses}
    assert addresses["InternalIP"] == kube.node_ip
    assert node.status.node_info.kubelet_version == "v1.37.2"
    assert node.status.node_info.container_runtime_version.startswith("containerd://1.6")


def test_pod_deployment_daemonset_statefulset_become_ready(workloads: Kube) -> None:
    kube = workloads

    def pod_ready() -> bool:
        pod = kube.core.read_namespaced_pod("smoke-pod", SMOKE_NS)
        return any(c.type == "Ready" and c.status == "True"
                   for c in pod.status.conditions or [])

    kube.wait("Pod smoke-pod Ready", pod_ready)
    kube.wait("Deployment echo available", lambda: (
        kube.apps.read_namespaced_deployment("echo", SMOKE_NS).status.ready_replicas or 0) == 2)
    kube.wait("DaemonSet hostpid ready", lambda: (
        kube.apps.read_namespaced_daemon_set("hostpid", SMOKE_NS).status.number_ready or 0) == 1)
    kube.wait("StatefulSet web ready", lambda: (
        kube.apps.read_namespaced_stateful_set("web", SMOKE_NS).status.ready_replicas or 0) == 1)

    # hostPID: the DaemonSet's pod saw the host's PID 1, and wrote it through its hostPath.
    volumes = Path(kube.info["dir"]) / "volumes"
    assert (volumes / "daemonset" / "pid1").read_bytes() == Path("/proc/1/cmdline").read_bytes()
    # The StatefulSet's claim is bound to one of the harness's hostPath volumes, and the pod's
    # write landed there.
    pvc = kube.core.read_namespaced_persistent_volume_claim("data-web-0", SMOKE_NS)
    assert pvc.status.phase == "Bound"
    pv = kube.core.read_persistent_volume(pvc.spec.volume_name)
    assert Path(pv.spec.host_path.path, "hello").read_text() == "web-0"


def test_pod_resolves_a_service_by_dns_name_and_calls_it(workloads: Kube) -> None:
    kube = workloads
    kube.wait("Deployment echo available", lambda: (
        kube.apps.read_namespaced_deployment("echo", SMOKE_NS).status.ready_replicas or 0) == 2)
    script = RETRY + (
        "print(socket.gethostbyname('echo.sfk-smoke.svc'))\n"
        "print(retry(lambda: urllib.request.urlopen('http://echo.sfk-smoke.svc/', timeout=10)"
        ".read().decode()))\n"
    )
    phase, logs = kube.run_python(SMOKE_NS, "dns-client", script)
    assert phase == "Succeeded", logs
    ip, body = logs.strip().splitlines()
    assert ip == kube.core.read_namespaced_service("echo", SMOKE_NS).spec.cluster_ip
    assert body.startswith(f"{kube.name} echo-")


def test_projected_token_for_spire_server_passes_token_review(kube: Kube) -> None:
    from kubernetes import client

    script = "print(open('/var/run/secrets/tokens/spire-agent').read())"
    phase, logs = kube.run_python(
        SMOKE_NS, "token-reader", script,
        spec_extra={"volumes": [{"name": "token", "projected": {"sources": [{
            "serviceAccountToken": {"audience": "spire-server", "expirationSeconds": 7200,
                                    "path": "spire-agent"}}]}}]},
        container_extra={"volumeMounts": [{"name": "token",
                                           "mountPath": "/var/run/secrets/tokens"}]})
    assert phase == "Succeeded", logs
    token = logs.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == ["spire-server"]

    def review(audience: str) -> Any:
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(
            token=token, audiences=[audience]))
        return kube.auth.create_token_review(body).status

    accepted = review("spire-server")
    assert accepted.authenticated is True
    assert accepted.audiences == ["spire-server"]
    assert accepted.user.username == f"system:serviceaccount:{SMOKE_NS}:default"
    assert review("some-other-audience").authenticated is not True


def test_downstream_pod_reaches_an_upstream_nodeport(kubes: dict[str, Kube]) -> None:
    upstream, downstream = kubes[UPSTREAM], kubes[DOWNSTREAM]
    _ensure_workloads(upstream)  # the NodePort Service and the pods behind it
    upstream.wait("upstream Deployment echo available", lambda: (
        upstream.apps.read_namespaced_deployment("echo", SMOKE_NS).status.ready_replicas
        or 0) == 2)
    url = f"http://{upstream.node_ip}:{NODE_PORT}/"
    script = RETRY + (
        f"print(retry(lambda: urllib.request.urlopen({url!r}, timeout=10).read().decode()))"
    )
    phase, logs = downstream.run_python(SMOKE_NS, "cross-cluster", script)
    assert phase == "Succeeded", logs
    assert logs.strip().startswith(f"{UPSTREAM} echo-")


@pytest.mark.parametrize("image,version", [
    ("spire-server", "1.13.3"), ("spire-agent", "1.13.3")])
def test_spire_images_run_the_pinned_release(kubes: dict[str, Kube], image: str,
                                             version: str) -> None:
    from spire_fabric.testing.kubernetes import load_image

    kube = kubes[DOWNSTREAM]
    ref = load_image(kube.name, image)
    assert ref.endswith(f"/{image}:{version}")
    phase, logs = kube.run(SMOKE_NS, f"{image}-version", ref, [f"/opt/spire/bin/{image}",
                                                              "--version"])
    assert phase == "Succeeded", logs
    assert logs.strip() == version


def test_mariadb_image_serves_the_mysql_protocol(kubes: dict[str, Kube]) -> None:
    from kubernetes import utils

    from spire_fabric.testing.kubernetes import load_image

    kube = kubes[UPSTREAM]
    ref = load_image(kube.name, "mariadb")
    labels = {"app": "mariadb"}
    env = [{"name": k, "value": v} for k, v in (
        ("MYSQL_DATABASE", "spire"), ("MYSQL_USER", "spire"), ("MYSQL_PASSWORD", "s3cret"),
        ("MYSQL_ROOT_PASSWORD", "r00t"))]
    for doc in (
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mariadb"},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                 "name": "mariadb", "image": ref, "imagePullPolicy": "Never", "env": env,
                 "ports": [{"containerPort": 3306}],
                 "readinessProbe": {"tcpSocket": {"port": 3306}, "periodSeconds": 1}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mariadb"},
         "spec": {"selector": labels, "ports": [{"port": 3306}]}},
    ):
        try:
            utils.create_from_dict(kube.api, doc, namespace=SMOKE_NS)
        except utils.FailToCreateError as exc:
            if not all(e.status == 409 for e in exc.api_exceptions):
                raise
    kube.wait("MariaDB ready", lambda: (kube.apps.read_namespaced_deployment(
        "mariadb", SMOKE_NS).status.ready_replicas or 0) == 1, timeout=120)
    # The server's greeting (protocol 10, then its version string) is the first packet.
    script = RETRY + (
        "def greet():\n"
        "    s = socket.create_connection(('mariadb.sfk-smoke.svc', 3306), timeout=10)\n"
        "    return s.recv(1024)\n"
        "data = retry(greet)\n"
        "print(data[4], data[5:].split(b'\\0')[0].decode())\n"
    )
    phase, logs = kube.run_python(SMOKE_NS, "mysql-greeting", script)
    assert phase == "Succeeded", logs
    protocol, version = logs.split(maxsplit=1)
    assert protocol == "10"
    assert "MariaDB" in version, logs


def test_spire_controller_manager_image_runs_the_built_release(kubes: dict[str, Kube]) -> None:
    from spire_fabric.testing.kubernetes import SPIRE_CONTROLLER_MANAGER_VERSION, load_image

    kube = kubes[UPSTREAM]
    ref = load_image(kube.name, "spire-controller-manager")
    assert ref.endswith(f":{SPIRE_CONTROLLER_MANAGER_VERSION}")
    phase, logs = kube.run(SMOKE_NS, "scm-help", ref,
                           ["/usr/local/bin/spire-controller-manager", "-help"])
    assert phase == "Succeeded", logs
    assert "-config string" in logs
