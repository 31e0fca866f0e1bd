"""Smoke tests of each test cluster: the nodes, the workload kinds SPIRE needs, DNS, tokens,
pod traffic between the nodes of a cluster, and the one path between the clusters (a NodePort
on the other cluster's node address)."""

from __future__ import annotations

import base64
import ipaddress
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
        if self.path == '/peer':  # the address this request came from
            body = self.client_address[0].encode()
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


def test_every_node_is_ready(kube: Kube) -> None:
    nodes = {n.metadata.name: n for n in kube.core.list_node().items}
    short = kube.name.split("stream")[0]
    expected = [f"{short}stream-node"] + [
        f"{short}stream-node-{k}" for k in range(2, len(kube.nodes) + 1)]
    assert [n["name"] for n in kube.nodes] == expected
    assert sorted(nodes) == sorted(expected)
    # upstream one node; downstream one per SPIRE agent of its server (k8s_psat names an
    # agent after its node, so two agents of one server cannot share a node)
    assert len(expected) == (1 if kube.name == UPSTREAM else 3)
    for want in kube.nodes:
        node = nodes[want["name"]]
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", want["name"]
        addresses = {a.type: a.address for a in node.status.addresses}
        assert addresses["InternalIP"] == want["ip"]
        assert node.metadata.labels["spire-fabric.local/cluster"] == kube.name
        assert node.status.node_info.kubelet_version == "v1.37.2"
        assert node.status.node_info.container_runtime_version.startswith("containerd://1.6")
    assert kube.nodes[0]["ip"] == kube.node_ip


def test_pod_deployment_daemonset_statefulset_become_ready(workloads: Kube) -> None:
    kube = workloads

    def pod_ready() -> bool:
        pod = kube.core.read_namespaced_pod("smoke-pod", SMOKE_NS)
        return any(c.type == "Ready" and c.status == "True"
                   for c in pod.status.conditions or [])

    kube.wait("Pod smoke-pod Ready", pod_ready)
    kube.wait("Deployment echo available", lambda: (
        kube.apps.read_namespaced_deployment("echo", SMOKE_NS).status.ready_replicas or 0) == 2)
    kube.wait("DaemonSet hostpid ready on every node", lambda: (
        kube.apps.read_namespaced_daemon_set("hostpid", SMOKE_NS).status.number_ready
        or 0) == len(kube.nodes))
    # one DaemonSet pod on each node, with an address of that node's pod subnet
    pods = kube.core.list_namespaced_pod(SMOKE_NS, label_selector="app=hostpid").items
    by_node = {p.spec.node_name: p for p in pods}
    assert sorted(by_node) == sorted(n["name"] for n in kube.nodes)
    for n in kube.nodes:
        ip = ipaddress.ip_address(by_node[n["name"]].status.pod_ip)
        assert ip in ipaddress.ip_network(n["pod_cidr"]), (n, ip)
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


@pytest.fixture(scope="module")
def first_node_service(kubes: dict[str, Kube]) -> Kube:
    """Downstream: a Deployment whose one pod runs on the first node, behind Service
    `pinned`."""
    from kubernetes import utils

    kube = kubes[DOWNSTREAM]
    first = kube.nodes[0]["name"]
    labels = {"app": "pinned"}
    for doc in (
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pinned"},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"terminationGracePeriodSeconds": 0,
                      "nodeSelector": {"kubernetes.io/hostname": first},
                      "containers": [_echo_container(kube)]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pinned"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
    ):
        try:
            utils.create_from_dict(kube.api, doc, namespace=SMOKE_NS)
        except utils.FailToCreateError as exc:
            if not all(e.status == 409 for e in exc.api_exceptions):
                raise
    kube.wait("Deployment pinned available", lambda: (
        kube.apps.read_namespaced_deployment("pinned", SMOKE_NS).status.ready_replicas
        or 0) == 1)
    return kube


def test_a_pod_on_another_node_reaches_a_service_on_the_first_node(
        first_node_service: Kube) -> None:
    kube = first_node_service
    assert len(kube.nodes) >= 2
    (server,) = kube.core.list_namespaced_pod(SMOKE_NS, label_selector="app=pinned").items
    assert server.spec.node_name == kube.nodes[0]["name"]
    dns = kube.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
    cluster_ip = kube.core.read_namespaced_service("pinned", SMOKE_NS).spec.cluster_ip
    for node in kube.nodes[1:]:
        # by DNS name (CoreDNS runs on two of the nodes) through the Service, then straight
        # to the pod's address: the server sees the client pod's own address either way
        # (no NAT between pods, the route goes through the host; kube-proxy does not
        # masquerade pod-to-Service traffic, which a NetworkPolicy enforcer relies on)
        script = RETRY + (
            "print(socket.gethostbyname('pinned.sfk-smoke.svc'))\n"
            "print(retry(lambda: urllib.request.urlopen('http://pinned.sfk-smoke.svc/',"
            " timeout=10).read().decode()))\n"
            f"print(retry(lambda: urllib.request.urlopen('http://{server.status.pod_ip}:8080"
            "/peer', timeout=10).read().decode()))\n"
            "print(retry(lambda: urllib.request.urlopen('http://pinned.sfk-smoke.svc/peer',"
            " timeout=10).read().decode()))\n"
        )
        name = f"cross-node-{node['name']}"
        phase, logs = kube.run_python(SMOKE_NS, name, script, node=node["name"])
        assert phase == "Succeeded", (node, logs)
        ip, body, peer, service_peer = logs.strip().splitlines()
        assert service_peer == peer, (node, service_peer)
        assert ip == cluster_ip
        assert body.startswith(f"{DOWNSTREAM} pinned-"), body
        client = kube.core.read_namespaced_pod(name, SMOKE_NS)
        assert client.spec.node_name == node["name"]
        assert ipaddress.ip_address(client.status.pod_ip) in ipaddress.ip_network(
            node["pod_cidr"])
        assert peer == client.status.pod_ip, (node, peer)
    # two CoreDNS replicas on two different nodes of this cluster, as kubeadm places them
    assert len(dns) == 2, [(p.metadata.name, p.spec.node_name) for p in dns]
    assert len({p.spec.node_name for p in dns}) == 2
    assert {p.spec.node_name for p in dns} <= {n["name"] for n in kube.nodes}


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


def test_downstream_pods_on_every_node_reach_an_upstream_nodeport(
        kubes: dict[str, Kube]) -> None:
    upstream, downstream = kubes[UPSTREAM], kubes[DOWNSTREAM]
    _ensure_workloads(upstream)  # the NodePort Service and the pods behind it
    upstream.wait("upstream Deployment echo available", lambda: (
        upstream.apps.read_namespaced_deployment("echo", SMOKE_NS).status.ready_replicas
        or 0) == 2)
    url = f"http://{upstream.node_ip}:{NODE_PORT}/"
    script = RETRY + (
        f"print(retry(lambda: urllib.request.urlopen({url!r}, timeout=10).read().decode()))"
    )
    for node in downstream.nodes:
        phase, logs = downstream.run_python(SMOKE_NS, f"cross-cluster-{node['name']}", script,
                                            node=node["name"])
        assert phase == "Succeeded", (node, logs)
        assert logs.strip().startswith(f"{UPSTREAM} echo-"), (node, logs)


@pytest.mark.parametrize("image,version", [
    ("spire-server", "1.13.3"), ("spire-agent", "1.13.3")])
def test_spire_images_run_the_pinned_release(kubes: dict[str, Kube], image: str,
                                             version: str) -> None:
    from kube_harness import load_image

    kube = kubes[DOWNSTREAM]
    ref = load_image(kube.name, image)
    assert ref.endswith(f"/{image}:{version}")
    # load_image loaded it into every node: it runs on each (imagePullPolicy Never)
    for node in kube.nodes:
        phase, logs = kube.run(SMOKE_NS, f"{image}-version-{node['name']}", ref,
                               [f"/opt/spire/bin/{image}", "--version"], node=node["name"])
        assert phase == "Succeeded", (node, logs)
        assert logs.strip() == version


def test_mariadb_image_serves_the_mysql_protocol(kubes: dict[str, Kube]) -> None:
    from kube_harness import load_image
    from kubernetes import utils

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
    from kube_harness import SPIRE_CONTROLLER_MANAGER_VERSION, load_image

    kube = kubes[UPSTREAM]
    ref = load_image(kube.name, "spire-controller-manager")
    assert ref.endswith(f":{SPIRE_CONTROLLER_MANAGER_VERSION}")
    phase, logs = kube.run(SMOKE_NS, "scm-help", ref,
                           ["/usr/local/bin/spire-controller-manager", "-help"])
    assert phase == "Succeeded", logs
    assert "-config string" in logs
