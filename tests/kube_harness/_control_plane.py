"""A test cluster's certificates and control plane, and bringing its nodes up.

Each cluster has its own etcd, kube-apiserver, kube-controller-manager and kube-scheduler
(host processes; the API server listens on the host side of the first node's veth pair),
and its own nodes (upstream one, downstream three by default: `ClusterSpec.nodes`). CoreDNS
runs as a pod, on one node.
"""

from __future__ import annotations

import base64
import functools
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from kube_harness import _build, _images
from kube_harness._host import Daemons, State, https_ok, port_free, wait, write
from kube_harness._netpol import enforcer_ready
from kube_harness._node import Node
from kube_harness._objects import bootstrap_manifests, dns_replicas
from kube_harness._pki import ClusterPki
from kube_harness._plan import (
    CLUSTER_DOMAIN,
    NODE_IMAGES,
    ClusterSpec,
    KubeClusterError,
    Say,
    base_dir,
    kubeconfig_path,
)


def admin_kubeconfig(spec: ClusterSpec, user: str, crt: Path, key: Path, ca: Path) -> str:
    """A kubeconfig of one user for one cluster, the credentials inline."""
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": spec.name, "cluster": {
            "server": spec.api_url, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": f"{user}@{spec.name}", "user": {
            "client-certificate-data": b64(crt), "client-key-data": b64(key)}}],
        "contexts": [{"name": spec.name, "context": {
            "cluster": spec.name, "user": f"{user}@{spec.name}"}}],
        "current-context": spec.name,
    })



DEVICE_PLUGIN_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")


def _bound_since(since: float) -> bool:
    """Whether a kubelet made the device-plugin socket at or after ``since`` (epoch s)."""
    try:
        return os.stat(DEVICE_PLUGIN_SOCKET).st_mtime >= since - 1.0
    except FileNotFoundError:
        return False

class Cluster:
    """One cluster: its certificates, control plane and nodes, and the objects it needs."""

    def __init__(self, spec: ClusterSpec, state: State, say: Say) -> None:
        self.spec = spec
        self.state = state
        self.say = say
        self.dir = base_dir() / spec.name
        self.pki_dir = self.dir / "pki"
        self.kube_bin = _build.PARTS["kubernetes"].bin_dir
        self.etcd_bin = _build.PARTS["etcd"].bin_dir / "etcd"
        self.daemons = Daemons(spec.name, self.dir, state)
        self.spawn = self.daemons.spawn
        self.alive = self.daemons.alive
        self.nodes = [Node(n, self.dir, self.daemons, say) for n in spec.node_specs]

    # -- certificates and configs

    def pki(self) -> None:
        s = self.spec
        pki = ClusterPki(self.pki_dir, s.name)
        self.ca = pki.ca_cert
        self.apiserver = pki.issue(
            "apiserver", "kube-apiserver", server=True,
            dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 f"kubernetes.default.svc.{CLUSTER_DOMAIN}", "localhost"),
            ips=(s.host_ip, s.api_service_ip, "127.0.0.1"))
        self.apiserver_kubelet = pki.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
            org="system:masters", client=True)
        self.sa_key, self.sa_pub = pki.service_account_key()
        users = {
            "admin": ("kubernetes-admin", "system:masters"),
            "controller-manager": ("system:kube-controller-manager", None),
            "scheduler": ("system:kube-scheduler", None),
            "kube-proxy": ("system:kube-proxy", None),
        }
        # One kubelet identity per node: the Node authorizer lets a kubelet touch only its
        # own Node object and the pods bound to it.
        for n in self.nodes:
            users[n.kubelet_user] = (f"system:node:{n.spec.name}", "system:nodes")
            # The serving certificate names the node IP, so SPIRE's k8s workload attestor
            # can verify the kubelet against the cluster CA.
            n.kubelet_serving = pki.issue(
                f"{n.kubelet_user}-serving", n.spec.name, server=True, dns=(n.spec.name,),
                ips=(n.spec.node_ip,))
        self.kubeconfigs: dict[str, Path] = {}
        for name, (cn, org) in users.items():
            crt, key = pki.issue(name, cn, org=org, client=True)
            text = admin_kubeconfig(s, name, crt, key, self.ca)
            self.kubeconfigs[name] = write(self.dir / f"{name}.kubeconfig", text, 0o600)
        self.admin_client = (self.pki_dir / "admin.crt", self.pki_dir / "admin.key")

    # -- control plane

    def control_plane(self) -> None:
        s = self.spec
        for port in (s.port(79), s.port(80), s.port(57), s.port(59)):
            if not port_free("127.0.0.1", port):
                raise KubeClusterError(f"{s.name}: 127.0.0.1:{port} is already in use")
        etcd_url, peer_url = f"http://127.0.0.1:{s.port(79)}", f"http://127.0.0.1:{s.port(80)}"
        self.spawn("etcd", [
            str(self.etcd_bin), "--name", s.short, "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{s.short}={peer_url}", "--log-level", "warn",
        ])
        wait(f"{s.name} etcd", lambda: urllib.request.urlopen(
            f"{etcd_url}/health", timeout=2).status == 200, 60, self.alive("etcd"))
        p = self.pki_dir
        self.spawn("kube-apiserver", [
            str(self.kube_bin / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={s.host_ip}", f"--advertise-address={s.host_ip}",
            "--secure-port=6443",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={self.ca}",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={self.ca}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            f"--service-account-key-file={self.sa_pub}",
            f"--service-account-signing-key-file={self.sa_key}",
            f"--service-cluster-ip-range={s.service_cidr}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            "--cert-dir", str(self.dir / "apiserver-certs"),
        ])
        admin_crt, admin_key = self.admin_client
        wait(f"{s.name} kube-apiserver /readyz",
              lambda: https_ok(f"{s.api_url}/readyz", self.ca, admin_crt, admin_key), 120,
              self.alive("kube-apiserver"))
        # Started only after /readyz: earlier, the controller manager exits on a forbidden
        # read of the extension-apiserver-authentication ConfigMap.
        kc = self.kubeconfigs
        self.spawn("kube-controller-manager", [
            str(self.kube_bin / "kube-controller-manager"),
            f"--kubeconfig={kc['controller-manager']}",
            f"--authentication-kubeconfig={kc['controller-manager']}",
            f"--authorization-kubeconfig={kc['controller-manager']}",
            "--bind-address=127.0.0.1", f"--secure-port={s.port(57)}",
            f"--root-ca-file={self.ca}",
            f"--service-account-private-key-file={self.sa_key}",
            "--use-service-account-credentials=true",
            f"--cluster-name={s.name}",
            f"--service-cluster-ip-range={s.service_cidr}",
            "--leader-elect=false",
        ])
        self.spawn("kube-scheduler", [
            str(self.kube_bin / "kube-scheduler"),
            f"--kubeconfig={kc['scheduler']}",
            f"--authentication-kubeconfig={kc['scheduler']}",
            f"--authorization-kubeconfig={kc['scheduler']}",
            "--bind-address=127.0.0.1", f"--secure-port={s.port(59)}",
            "--leader-elect=false",
        ])

    def node(self) -> None:
        """Start every node's containerd, load the node images, then the kubelets."""
        for n in self.nodes:
            n.start_containerd()
        # Each node's containerd has its own content store, so every node imports every
        # image; two at a time (the machine has two cores and the imports are CPU-bound).
        jobs = [(n, image) for image in NODE_IMAGES for n in self.nodes]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for _ in pool.map(lambda job: job[0].load_image(job[1]), jobs):
                pass
        for n in self.nodes:
            started = time.time()
            n.start_kubelet_and_proxy(self.kubeconfigs, self.ca, self.kube_bin)
            # Every kubelet on the host empties the fixed /var/lib/kubelet/device-plugins/
            # and binds kubelet.sock there (no flag moves it): two starting together race,
            # and the one whose bind comes second exits ("Failed to start ContainerManager
            # ... bind: address already in use"), as one CI run did. The next kubelet starts
            # once this one has bound its socket (about a second).
            wait(f"{self.spec.name} node {n.spec.name}: kubelet bound {DEVICE_PLUGIN_SOCKET}",
                 functools.partial(_bound_since, started), 60,
                 self.alive(f"{n.spec.name}/kubelet"))  # fmt: skip

    def load_image(self, name: str | _images.Image) -> str:
        """Load one image into every node of this cluster (a pod may land on any)."""
        image = _images.image_named(name)
        _images.ensure_image(image, self.say)
        with ThreadPoolExecutor(max_workers=2) as pool:
            refs = list(pool.map(lambda n: n.load_image(name), self.nodes))
        return refs[0] if refs else image.ref

    # -- objects the cluster needs before tests

    def bootstrap_objects(self) -> None:
        from kubernetes import client, config, utils

        api = config.new_client_from_config(str(self.kubeconfigs["admin"]))
        docs = bootstrap_manifests(self.spec, self.dir)
        for doc in docs:
            try:
                utils.create_from_dict(api, doc)
            except utils.FailToCreateError as exc:
                if not all(getattr(e, "status", None) == 409 for e in exc.api_exceptions):
                    raise
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def wait_ready(self, timeout: float = 120) -> None:
        s = self.spec
        for n in self.nodes:
            def node_ready(name: str = n.spec.name) -> bool:
                node = self.core.read_node(name)
                conditions = (node.status.conditions if node.status else None) or []
                return any(c.type == "Ready" and c.status == "True" for c in conditions)

            wait(f"{s.name} node {n.spec.name} Ready", node_ready, timeout,
                  self.alive(f"{n.spec.name}/kubelet"))

        def dns_ready() -> bool:
            dep = self.apps.read_namespaced_deployment("coredns", "kube-system")
            return ((dep.status.ready_replicas if dep.status else None) or 0) >= dns_replicas(s)

        wait(f"{s.name} CoreDNS ready", dns_ready, timeout)
        wait(f"{s.name} NetworkPolicy enforcer ready on every node",
             lambda: enforcer_ready(self.apps, len(self.nodes)), timeout)



def write_kubeconfig(clusters: list[Cluster]) -> None:
    """The admin kubeconfig of both clusters, one context each (named after the cluster)."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [],
                              "users": [], "contexts": []}
    for c in clusters:
        doc = yaml.safe_load(c.kubeconfigs["admin"].read_text())
        for key in ("clusters", "users", "contexts"):
            merged[key] += doc[key]
    merged["current-context"] = clusters[0].spec.name
    write(kubeconfig_path(), yaml.safe_dump(merged), 0o600)
