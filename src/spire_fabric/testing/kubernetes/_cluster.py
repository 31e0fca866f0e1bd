"""Two real Kubernetes clusters on one machine: bring-up, status, teardown.

Each cluster has its own etcd, kube-apiserver, kube-controller-manager and kube-scheduler
(host processes; the API server listens on the host side of the first node's veth pair),
and its own nodes (upstream one, downstream three by default: `ClusterSpec.nodes`). Each
node is a network namespace of its own with containerd, kubelet and kube-proxy started with
`nsenter --net` (not `ip netns exec`, which would give them a private mount namespace and
hide the kubelet's volume mounts from runc). CoreDNS runs as a pod, on one node.

Everything created is recorded in `<base>/state.json` as it is created, so `down` removes
exactly that (processes by pid and start time, mounts under our directories, our network
namespaces, veths, host routes, iptables rules tagged with our comment, our cgroups) even
after a half-finished `up`, and puts `net.ipv4.ip_forward` back as it found it.

Network (all private ranges unused here; N = 1 upstream, 2 downstream; node k = 1, 2, ...):
- node link 10.250.N.4(k-1)/30: host side `sfk-<short>[k]0` = .4(k-1)+1 (the first node's
  is the API server's address), node `eth0` = .4(k-1)+2, default route via the host side;
- pods 10.251.N.0/24, a /26 per node (node k: 10.251.N.64(k-1)/26) on a bridge inside the
  node namespace; the host routes each node's /26 through that node's link, so pods of one
  cluster talk to each other by address across nodes (no NAT between them); traffic that
  leaves the cluster's pod range is masqueraded to the node address;
- services 10.252.N.0/24 (API 10.252.N.1, DNS 10.252.N.10), routed from the host via the
  first node.
The fence: the host forwards between our node links only (any two, of either cluster);
everything else a node or pod sends to be forwarded is dropped, and the host itself rejects
our ranges on any interface that is not ours. Untranslated service addresses are rejected
in each node.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spire_fabric.errors import SpireFabricError
from spire_fabric.testing.kubernetes import _build, _images
from spire_fabric.testing.kubernetes._pki import ClusterPki

COMMENT = "spire-fabric-kube"
BASE_ENV = "SPIRE_FABRIC_KUBE_DIR"
DEFAULT_BASE = Path("/var/lib/spire-fabric-kube")
CLUSTER_DOMAIN = "cluster.local"
STORAGE_CLASS = "sfk-local"
# Retained volumes are not reused after their claim is gone (as in a real cluster without
# a provisioner), so there are enough for many up/down cycles of every preset in one run.
PV_COUNT = 24
# Images every node gets at start; the rest are loaded on demand with `load_image`.
NODE_IMAGES = ("pause", "coredns", "python")

Say = Callable[[str], None]


class KubeClusterError(SpireFabricError, RuntimeError):
    """The test clusters could not be brought up, reached or torn down."""


# The cluster's /24 pod range is split into /26 per node, and the cluster's /24 of node links
# into /30 per node: four nodes fit in both.
MAX_NODES = 4
_POD_PREFIX = 26


@dataclass(frozen=True)
class NodeSpec:
    """Node `k` (1-based) of a cluster: its names and its addresses.

    The first node keeps the names and the directory layout of the one-node harness
    (`downstream-node`, namespace `sfk-down`, link `sfk-down0`, files in the cluster's
    directory), so tooling and docs written for one node stay right for it; node k > 1 adds
    k to each name (`downstream-node-2`, `sfk-down2`, `sfk-down20`, `<cluster dir>/<name>`).
    """

    cluster: ClusterSpec
    k: int

    @property
    def _suffix(self) -> str:
        return "" if self.k == 1 else str(self.k)

    @property
    def name(self) -> str:
        base = f"{self.cluster.short}stream-node"
        return base if self.k == 1 else f"{base}-{self.k}"

    @property
    def link_cidr(self) -> str:
        return f"10.250.{self.cluster.index}.{4 * (self.k - 1)}/30"

    @property
    def host_ip(self) -> str:
        """The host side of this node's link: the node's default gateway."""
        return f"10.250.{self.cluster.index}.{4 * (self.k - 1) + 1}"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.cluster.index}.{4 * (self.k - 1) + 2}"

    @property
    def pod_cidr(self) -> str:
        size = 2 ** (32 - _POD_PREFIX)
        return f"10.251.{self.cluster.index}.{size * (self.k - 1)}/{_POD_PREFIX}"

    @property
    def netns(self) -> str:
        return f"sfk-{self.cluster.short}{self._suffix}"

    @property
    def host_veth(self) -> str:
        return f"{self.netns}0"

    @property
    def peer_veth(self) -> str:
        """The node side's name on the host, for the moment before it moves into the node."""
        return f"{self.netns}1"

    @property
    def cgroup(self) -> str:
        base = f"sfk-{self.cluster.short}stream"
        return base if self.k == 1 else f"{base}-{self.k}"

    def dir(self, cluster_dir: Path) -> Path:
        return cluster_dir if self.k == 1 else cluster_dir / self.name

    def log_prefix(self) -> str:
        return "" if self.k == 1 else f"{self.name}."


@dataclass(frozen=True)
class ClusterSpec:
    """One test cluster: its name, its number N in the address plan, and how many nodes.

    The properties without a node (`node_ip`, `node_name`, `netns`, ...) are the first
    node's: the API server listens on the host side of the first node's link, and the other
    nodes reach it through their default route to the host, where it is a local address.
    """

    name: str
    short: str
    index: int
    nodes: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise KubeClusterError(
                f"{self.name}: {self.nodes} nodes; between 1 and {MAX_NODES} fit the address "
                f"plan (a /{_POD_PREFIX} of pods and a /30 link per node)")

    def node(self, k: int) -> NodeSpec:
        if not 1 <= k <= MAX_NODES:
            raise KubeClusterError(f"{self.name}: no node {k} in the address plan")
        return NodeSpec(self, k)

    @property
    def node_specs(self) -> tuple[NodeSpec, ...]:
        return tuple(self.node(k) for k in range(1, self.nodes + 1))

    @property
    def possible_nodes(self) -> tuple[NodeSpec, ...]:
        """Every node the address plan allows: what teardown and `leftovers` look for."""
        return tuple(self.node(k) for k in range(1, MAX_NODES + 1))

    @property
    def host_ip(self) -> str:
        return self.node(1).host_ip

    @property
    def node_ip(self) -> str:
        return self.node(1).node_ip

    @property
    def link_cidr(self) -> str:
        return f"10.250.{self.index}.0/24"

    @property
    def pod_cidr(self) -> str:
        return f"10.251.{self.index}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.252.{self.index}.0/24"

    @property
    def api_service_ip(self) -> str:
        return f"10.252.{self.index}.1"

    @property
    def dns_ip(self) -> str:
        return f"10.252.{self.index}.10"

    @property
    def netns(self) -> str:
        return self.node(1).netns

    @property
    def host_veth(self) -> str:
        return self.node(1).host_veth

    @property
    def node_name(self) -> str:
        return self.node(1).name

    @property
    def cgroup(self) -> str:
        return self.node(1).cgroup

    @property
    def api_url(self) -> str:
        return f"https://{self.host_ip}:6443"

    def port(self, offset: int) -> int:
        # Below the 30000-60000 loopback range other tests on this machine use.
        return 21000 + 100 * self.index + offset

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "short": self.short, "index": self.index,
                "nodes": self.nodes}


# Upstream keeps one node; downstream has three, one per SPIRE agent of the downstream
# server: k8s_psat names an agent after its node's UID, so two agents of one server on one
# node would share a SPIFFE ID and evict each other.
CLUSTERS = (
    ClusterSpec("upstream-spire-cluster", "up", 1, nodes=1),
    ClusterSpec("downstream-spire-cluster", "down", 2, nodes=3),
)
OUTSIDE_RANGE = "10.250.0.0/15"  # node links, pods
SERVICE_RANGE = "10.252.0.0/16"


def base_dir() -> Path:
    return Path(os.environ.get(BASE_ENV) or DEFAULT_BASE)


def kubeconfig_path() -> Path:
    return base_dir() / "kubeconfig"


# ---------------------------------------------------------------------------- state


class State:
    """What `up` created, saved after every change so `down` can always undo it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.is_file():
            self.data = json.loads(path.read_text())
        self.data.setdefault("pids", [])  # [name, pid, start_time]
        self.data.setdefault("iptables", [])  # [table, chain, *spec]
        self.data.setdefault("netns", [])
        self.data.setdefault("links", [])
        self.data.setdefault("cgroups", [])
        self.data.setdefault("pod_netns", [])
        self.data.setdefault("dirs", [])
        self.data.setdefault("sysctl", {})
        self.data.setdefault("routes", [])  # host routes: [cidr, "via", ip, "dev", link]
        self.data.setdefault("sockets", [])  # containerd sockets, one per node

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.rename(self.path)

    def add(self, key: str, value: Any) -> None:
        if value not in self.data[key]:
            self.data[key].append(value)
        self.save()


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    base_dir().mkdir(parents=True, exist_ok=True)
    with open(base_dir() / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------------ helpers


def _sh(*cmd: str, check: bool = True, netns: str | None = None) -> str:
    argv = list(cmd)
    if netns:
        argv = ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise KubeClusterError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _kubeconfig(spec: ClusterSpec, user: str, crt: Path, key: Path, ca: Path) -> str:
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


def _wait(what: str, probe: Callable[[], bool], timeout: float, proc_alive: Callable[[], bool]
          | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if probe():
                return
        if proc_alive is not None and not proc_alive():
            raise KubeClusterError(f"{what}: the process exited")
        time.sleep(0.3)
    raise KubeClusterError(f"{what}: not ready after {timeout:.0f} s")


def _https_ok(url: str, ca: Path, crt: Path, key: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(crt), str(key))
    with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
        status: int = resp.status
    return status == 200


def _port_free(host: str, port: int) -> bool:
    """True if a server could listen on host:port now.

    With SO_REUSEADDR, as Go's listeners (etcd, the Kubernetes components) set it: the
    connections of the clusters just torn down linger in TIME_WAIT on these ports for a
    minute, and they do not stop a real listener, so they must not fail `up` either.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# ------------------------------------------------------------------------ cluster


class _Cluster:
    def __init__(self, spec: ClusterSpec, state: State, say: Say) -> None:
        self.spec = spec
        self.state = state
        self.say = say
        self.dir = base_dir() / spec.name
        self.pki_dir = self.dir / "pki"
        self.kube_bin = _build.PARTS["kubernetes"].bin_dir
        self.etcd_bin = _build.PARTS["etcd"].bin_dir / "etcd"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.nodes = [_Node(self, n) for n in spec.node_specs]

    # -- processes

    def spawn(self, name: str, argv: list[str], *, node: _Node | None = None) -> None:
        """Start `argv` in its own session, logging to `logs/`, and record pid + start time.

        A node's process runs with `nsenter --net` in the node's namespace and is named
        `<node>/<name>`; the control plane's are named `<name>`.
        """
        log_name = f"{name}.log"
        if node is not None:
            argv = ["nsenter", f"--net=/run/netns/{node.spec.netns}", "--", *argv]
            log_name = f"{node.spec.log_prefix()}{name}.log"
            name = f"{node.spec.name}/{name}"
        log = open(self.dir / "logs" / log_name, "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.dir,
        )
        log.close()
        self.procs[name] = proc
        start = _proc_start_time(proc.pid)
        self.state.add("pids", [f"{self.spec.name}/{name}", proc.pid, start])

    def alive(self, name: str) -> Callable[[], bool]:
        return lambda: self.procs[name].poll() is None

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
            self.kubeconfigs[name] = _write(
                self.dir / f"{name}.kubeconfig", _kubeconfig(s, name, crt, key, self.ca), 0o600)
        self.admin_client = (self.pki_dir / "admin.crt", self.pki_dir / "admin.key")

    # -- control plane

    def control_plane(self) -> None:
        s = self.spec
        for port in (s.port(79), s.port(80), s.port(57), s.port(59)):
            if not _port_free("127.0.0.1", port):
                raise KubeClusterError(f"{s.name}: 127.0.0.1:{port} is already in use")
        etcd_url, peer_url = f"http://127.0.0.1:{s.port(79)}", f"http://127.0.0.1:{s.port(80)}"
        self.spawn("etcd", [
            str(self.etcd_bin), "--name", s.short, "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{s.short}={peer_url}", "--log-level", "warn",
        ])
        _wait(f"{s.name} etcd", lambda: urllib.request.urlopen(
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
        _wait(f"{s.name} kube-apiserver /readyz",
              lambda: _https_ok(f"{s.api_url}/readyz", self.ca, admin_crt, admin_key), 120,
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
            n.start_kubelet_and_proxy()

    def load_image(self, name: str) -> str:
        """Load one image into every node of this cluster (a pod may land on any)."""
        image = _images.image_set()[name]
        _images.ensure_image(image, self.say)
        with ThreadPoolExecutor(max_workers=2) as pool:
            refs = list(pool.map(lambda n: n.load_image(name), self.nodes))
        return refs[0] if refs else image.ref

    # -- objects the cluster needs before tests

    def bootstrap_objects(self) -> None:
        from kubernetes import client, config, utils

        api = config.new_client_from_config(str(self.kubeconfigs["admin"]))
        docs = _bootstrap_manifests(self.spec, self.dir)
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

            _wait(f"{s.name} node {n.spec.name} Ready", node_ready, timeout,
                  self.alive(f"{n.spec.name}/kubelet"))

        def dns_ready() -> bool:
            dep = self.apps.read_namespaced_deployment("coredns", "kube-system")
            return ((dep.status.ready_replicas if dep.status else None) or 0) >= 1

        _wait(f"{s.name} CoreDNS ready", dns_ready, timeout)


class _Node:
    """One node of a cluster: a network namespace with containerd, kubelet and kube-proxy."""

    def __init__(self, cluster: _Cluster, spec: NodeSpec) -> None:
        self.cluster = cluster
        self.spec = spec
        self.dir = spec.dir(cluster.dir)
        self.sock = self.dir / "containerd" / "containerd.sock"
        self.kubelet_user = "kubelet" if spec.k == 1 else f"kubelet-{spec.name}"
        self.kubelet_serving: tuple[Path, Path] | None = None

    # -- network

    def network(self) -> None:
        """The node's namespace, its veth link to the host, and its routes.

        The node routes everything via the host; the host routes the node's pod subnet
        through the node's link, so a pod on one node reaches a pod on another node of its
        cluster by address, through the host (the fence lets forwarding between our links
        through).
        """
        n, c = self.spec, self.cluster.spec
        state = self.cluster.state
        _sh("ip", "netns", "add", n.netns)
        state.add("netns", n.netns)
        _sh("ip", "link", "add", n.host_veth, "type", "veth", "peer", "name", n.peer_veth)
        state.add("links", n.host_veth)
        _sh("ip", "link", "set", n.peer_veth, "netns", n.netns)
        _sh("ip", "link", "set", n.peer_veth, "name", "eth0", netns=n.netns)
        _sh("ip", "addr", "add", f"{n.host_ip}/30", "dev", n.host_veth)
        _sh("ip", "link", "set", n.host_veth, "up")
        _sh("ip", "addr", "add", f"{n.node_ip}/30", "dev", "eth0", netns=n.netns)
        _sh("ip", "link", "set", "eth0", "up", netns=n.netns)
        _sh("ip", "link", "set", "lo", "up", netns=n.netns)
        _sh("ip", "route", "add", "default", "via", n.host_ip, netns=n.netns)
        routes = [n.pod_cidr]
        if n.k == 1:
            # Host processes (the API server calling a webhook Service) reach services
            # through the first node, where kube-proxy translates them.
            routes.append(c.service_cidr)
        for cidr in routes:
            route = [cidr, "via", n.node_ip, "dev", n.host_veth]
            _sh("ip", "route", "add", *route)
            state.add("routes", route)
        _sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=n.netns)
        with contextlib.suppress(KubeClusterError):
            _sh("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", netns=n.netns)
        # Inside the node (gone with its namespace): a service address that kube-proxy did
        # not translate has nowhere to go but off the machine, so refuse it here.
        for chain in ("FORWARD", "OUTPUT"):
            _sh("iptables", "-A", chain, "-d", c.service_cidr, "-m", "comment",
                "--comment", COMMENT, "-j", "REJECT", netns=n.netns)
        # Pod to pod inside the cluster keeps the pod's address (no NAT between pods, as
        # Kubernetes networking promises): the bridge plugin masquerades everything that
        # leaves the node's /26. Appended now, before the bridge plugin appends its per-pod
        # jumps and after kube-proxy prepends its own (which must still masquerade hairpin
        # service traffic).
        _sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", c.pod_cidr, "-d", c.pod_cidr,
            "-m", "comment", "--comment", COMMENT, "-j", "ACCEPT", netns=n.netns)

    # -- processes

    def start_containerd(self) -> None:
        n, c = self.spec, self.cluster.spec
        d = self.dir
        cdir = d / "containerd"
        pause = _images.image_set()["pause"].ref
        _write(cdir / "config.toml", f"""version = 2
root = "{cdir / 'root'}"
state = "{cdir / 'state'}"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{cdir / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{cdir / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d / 'cni' / 'net.d'}"
""")
        _write(d / "cni" / "net.d" / "10-sfk.conflist", json.dumps({
            "cniVersion": "0.4.0",
            "name": f"sfk-{c.short}",
            "plugins": [
                {"type": "bridge", "bridge": "sfk-pods", "isGateway": True,
                 "isDefaultGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": n.pod_cidr}]],
                          "dataDir": str(d / "cni" / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=1))
        self.cgroups()
        self.cluster.state.add("sockets", str(self.sock))
        self.cluster.spawn("containerd", ["containerd", "--config", str(cdir / "config.toml")],
                           node=self)
        _wait(f"{c.name} {n.name} containerd", lambda: self.sock.is_socket() and self._ctr(
            "version").strip() != "", 30, self.cluster.alive(f"{n.name}/containerd"))

    def start_kubelet_and_proxy(self) -> None:
        n, c = self.spec, self.cluster.spec
        d = self.dir
        kc = self.cluster.kubeconfigs
        _write(d / "resolv.conf", "nameserver 127.0.0.1\n")
        assert self.kubelet_serving is not None
        kubelet_crt, kubelet_key = self.kubelet_serving
        _write(d / "kubelet-config.yaml", yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": n.node_ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.cluster.ca)}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(kubelet_crt),
            "tlsPrivateKeyFile": str(kubelet_key),
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{n.cgroup}",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            "clusterDNS": [c.dns_ip],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(d / "resolv.conf"),
            "podLogsDir": str(d / "pod-logs"),
            "volumePluginDir": str(d / "kubelet" / "volume-plugins"),
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False,
        }))
        kube_bin = self.cluster.kube_bin
        self.cluster.spawn("kubelet", [
            str(kube_bin / "kubelet"),
            f"--config={d / 'kubelet-config.yaml'}",
            f"--kubeconfig={kc[self.kubelet_user]}",
            f"--root-dir={d / 'kubelet'}",
            f"--cert-dir={d / 'kubelet' / 'pki'}",
            f"--hostname-override={n.name}",
            f"--node-ip={n.node_ip}",
            f"--node-labels=spire-fabric.local/cluster={c.name}",
        ], node=self)
        _write(d / "kube-proxy-config.yaml", yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kc["kube-proxy"])},
            "mode": "iptables",
            "hostnameOverride": n.name,
            "bindAddress": n.node_ip,
            "clusterCIDR": c.pod_cidr,
            "nodePortAddresses": [f"{n.node_ip}/32"],
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
            # root cannot change the conntrack sysctls here: leave them alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
            "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        }))
        self.cluster.spawn("kube-proxy", [
            str(kube_bin / "kube-proxy"), f"--config={d / 'kube-proxy-config.yaml'}",
        ], node=self)

    def _ctr(self, *args: str) -> str:
        return _sh("ctr", "--address", str(self.sock), "-n", "k8s.io", *args)

    def load_image(self, name: str) -> str:
        image = _images.image_set()[name]
        tarball = _images.ensure_image(image, self.cluster.say)
        self._ctr("images", "import", str(tarball))
        return image.ref

    def cgroups(self) -> None:
        root = Path("/sys/fs/cgroup")
        for hier in sorted(root.iterdir()):
            if hier.name == "unified" or not hier.is_dir() or hier.is_symlink():
                continue
            cg = hier / self.spec.cgroup
            if not cg.exists():
                cg.mkdir()
                self.cluster.state.add("cgroups", str(cg))
            if hier.name.startswith("cpuset") and (hier / "cpuset.cpus").exists():
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (cg / f).write_text((hier / f).read_text())


def _bootstrap_manifests(spec: ClusterSpec, d: Path) -> list[dict[str, Any]]:
    coredns = _images.image_set()["coredns"].ref
    corefile = (
        ".:53 {\n    errors\n    health :8080\n    ready :8181\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        "        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }\n"
        "    cache 30\n    loop\n    reload\n}\n"
    )
    labels = {"k8s-app": "kube-dns"}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": STORAGE_CLASS, "annotations": {
             "storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
         "reclaimPolicy": "Retain"},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [
             {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns",
                       "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "coredns", "namespace": "kube-system"},
         "data": {"Corefile": corefile}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {
                 "serviceAccountName": "coredns",
                 "dnsPolicy": "Default",
                 "containers": [{
                     "name": "coredns", "image": coredns, "imagePullPolicy": "Never",
                     "args": ["-conf", "/etc/coredns/Corefile"],
                     "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                               {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}],
                     "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                        "periodSeconds": 2},
                     "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                 }],
                 "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
             }}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": spec.dns_ip, "selector": labels, "ports": [
             {"name": "dns", "port": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
    ]
    for i in range(PV_COUNT):
        # Made here, world-writable like a local-path provisioner's: a hostPath volume gets
        # no fsGroup ownership change, and SPIRE (uid 1000) and MySQL (uid 999) must write.
        volume = d / "volumes" / f"pv-{i}"
        volume.mkdir(parents=True, exist_ok=True)
        volume.chmod(0o777)
        docs.append({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"sfk-pv-{i}"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": STORAGE_CLASS,
                     "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": str(d / "volumes" / f"pv-{i}"),
                                  "type": "DirectoryOrCreate"}}})
    return docs


# ------------------------------------------------------------------------ public


def fence_rules(clusters: Sequence[ClusterSpec]) -> list[list[str]]:
    """The host's iptables rules, in order, without our comment (`_host_network` adds it).

    The host forwards between our node links (any two nodes of either cluster: pod to pod
    across the nodes of one cluster, and a pod of one cluster to a NodePort of the other),
    and drops whatever else enters or leaves an `sfk-*` link to be forwarded (so nothing of
    ours is forwarded off the machine, and the fence test's `sfk-out0` stays outside).
    """
    links = [n.host_veth for c in clusters for n in c.node_specs]
    rules: list[list[str]] = [
        ["filter", "FORWARD", "-i", a, "-o", b, "-j", "ACCEPT"]
        for a in links for b in links if a != b
    ]
    rules += [
        ["filter", "FORWARD", "-i", "sfk-+", "-j", "DROP"],
        ["filter", "FORWARD", "-o", "sfk-+", "-j", "DROP"],
        # The host's own addresses in the range (API servers) are reached over `lo`.
        ["filter", "OUTPUT", "-d", OUTSIDE_RANGE, "-m", "addrtype", "!", "--dst-type",
         "LOCAL", "!", "-o", "sfk-+", "-j", "REJECT"],
        ["filter", "OUTPUT", "-d", SERVICE_RANGE, "!", "-o", "sfk-+", "-j", "REJECT"],
    ]
    return rules


def _host_network(state: State, clusters: Sequence[ClusterSpec]) -> None:
    if "ip_forward" not in state.data["sysctl"]:
        state.data["sysctl"]["ip_forward"] = Path("/proc/sys/net/ipv4/ip_forward").read_text(
        ).strip()
        state.save()
    _sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    # Inserted in reverse so they end up first in this order.
    for rule in reversed(fence_rules(clusters)):
        table, chain, *spec = rule
        full = [*spec[:-2], "-m", "comment", "--comment", COMMENT, *spec[-2:]]
        _sh("iptables", "-t", table, "-I", chain, "1", *full)
        state.add("iptables", [table, chain, *full])


def _recorded_specs(state: State) -> tuple[ClusterSpec, ...]:
    """The clusters as `up` made them (node counts included).

    A state file without them was written by the one-node harness: one node each. No
    state at all (nothing up yet) gives the defaults.
    """
    recorded = state.data.get("clusters")
    if recorded:
        return tuple(ClusterSpec(**c) for c in recorded)
    if state.data["pids"] or state.data["netns"]:
        return tuple(dataclasses.replace(c, nodes=1) for c in CLUSTERS)
    return CLUSTERS


def up(say: Say = print, *, timeout: float = 180,
       clusters: Sequence[ClusterSpec] = CLUSTERS) -> dict[str, Any]:
    """Bring both clusters up (idempotent: if they are up and healthy, do nothing).

    `clusters` sets the node count of each (default: upstream 1, downstream 3). Clusters
    that are up with other node counts are torn down and brought up again.
    """
    if os.geteuid() != 0:
        raise KubeClusterError("the test clusters need root (network namespaces, cgroups)")
    clusters = tuple(clusters)
    with _lock():
        current = _status_locked()
        path = base_dir() / "state.json"
        same_shape = current["state"] and _recorded_specs(State(path)) == clusters
        if current["up"] and same_shape:
            say("kube-clusters: already up")
            return current
        if current["up"]:
            say("kube-clusters: up with other node counts; tearing them down first")
            _down_locked(say)
        elif current["state"]:
            say("kube-clusters: tearing down a previous half-started set first")
            _down_locked(say)
        t0 = time.monotonic()
        for name in ("etcd", "kubernetes", "coredns"):
            _build.ensure_part(name, say)
        for name in NODE_IMAGES:
            _images.ensure_image(_images.image_set()[name], say)
        for tool in ("containerd", "ctr", "runc", "iptables", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise KubeClusterError(f"`{tool}` is not installed (see scripts/kube-clusters)")
        base = base_dir()
        base.mkdir(parents=True, exist_ok=True)
        state = State(base / "state.json")
        state.data["clusters"] = [c.to_json() for c in clusters]
        state.data["pod_netns_before"] = sorted(p.name for p in Path("/run/netns").glob("cni-*")
                                                ) if Path("/run/netns").is_dir() else []
        state.save()
        try:
            made = []
            for spec in clusters:
                shutil.rmtree(base / spec.name, ignore_errors=True)
                (base / spec.name / "logs").mkdir(parents=True)
                state.add("dirs", str(base / spec.name))
                made.append(_Cluster(spec, state, say))
            # Each phase's time is reported: where a slow `up` spends it.
            phases: list[str] = []
            mark = time.monotonic()

            def done(phase: str) -> None:
                nonlocal mark
                now = time.monotonic()
                phases.append(f"{phase} {now - mark:.1f} s")
                mark = now

            _host_network(state, clusters)
            for c in made:
                for n in c.nodes:
                    n.network()
                c.pki()
            done("network and certificates")
            for c in made:
                c.control_plane()
            done("control planes")
            for c in made:
                c.node()
            done("nodes (containerd, images, kubelet, kube-proxy)")
            for c in made:
                c.bootstrap_objects()
            for c in made:
                c.wait_ready(timeout)
            done("nodes Ready and CoreDNS ready")
            _write_kubeconfig(made)
        except BaseException:
            say("kube-clusters: bring-up failed; logs are in "
                f"{base}/<cluster>/logs (kept until the next up)")
            _down_locked(say, keep_logs=True)
            raise
        nodes = sum(c.nodes for c in clusters)
        say(f"kube-clusters: {', '.join(phases)}")
        say(f"kube-clusters: both clusters ({nodes} nodes) up in {time.monotonic() - t0:.1f} s; "
            f"KUBECONFIG={kubeconfig_path()}")
        return _status_locked()


def _write_kubeconfig(clusters: list[_Cluster]) -> None:
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [],
                              "users": [], "contexts": []}
    for c in clusters:
        doc = yaml.safe_load(c.kubeconfigs["admin"].read_text())
        for key in ("clusters", "users", "contexts"):
            merged[key] += doc[key]
    merged["current-context"] = clusters[0].spec.name
    _write(kubeconfig_path(), yaml.safe_dump(merged), 0o600)


def load_image(cluster: str, name: str, say: Say = print) -> str:
    """Load one of `_images.image_set()` into every node of a running cluster; return its ref.

    Every node: a pod (a SPIRE agent of a DaemonSet, a server the scheduler places) may run
    on any of them, and `imagePullPolicy: Never` finds only what that node's containerd has.
    """
    specs = _recorded_specs(State(base_dir() / "state.json"))
    spec = next((c for c in specs if c.name == cluster), None)
    if spec is None:
        raise KubeClusterError(f"no test cluster named {cluster!r}")
    c = _Cluster(spec, State(base_dir() / "state.json"), say)
    return c.load_image(name)


def _status_locked() -> dict[str, Any]:
    path = base_dir() / "state.json"
    out: dict[str, Any] = {"up": False, "state": path.is_file(), "clusters": {},
                           "kubeconfig": str(kubeconfig_path())}
    if not path.is_file():
        return out
    state = State(path)
    procs = {}
    for name, pid, start in state.data["pids"]:
        procs[name] = start is not None and _running(pid, start)
    healthy = bool(procs) and all(procs.values())
    for spec in _recorded_specs(state):
        ready = False
        crt = base_dir() / spec.name / "pki" / "admin.crt"
        with contextlib.suppress(Exception):
            ready = _https_ok(f"{spec.api_url}/readyz", base_dir() / spec.name / "pki" / "ca.crt",
                              crt, crt.with_suffix(".key"))
        out["clusters"][spec.name] = {
            "api": spec.api_url, "node_ip": spec.node_ip, "api_ready": ready,
            "dir": str(base_dir() / spec.name),
            "nodes": [{"name": n.name, "ip": n.node_ip, "pod_cidr": n.pod_cidr,
                       "netns": n.netns, "link": n.host_veth,
                       "dir": str(n.dir(base_dir() / spec.name))} for n in spec.node_specs],
            "service_unused_ip": f"10.252.{spec.index}.250",
            "processes": {k.split("/", 1)[1]: v for k, v in procs.items()
                          if k.startswith(spec.name + "/")},
        }
        healthy = healthy and ready
    out["up"] = healthy and kubeconfig_path().is_file()
    return out


def status() -> dict[str, Any]:
    with _lock():
        return _status_locked()


# ------------------------------------------------------------------------ teardown


def _running(pid: int, start: str | None) -> bool:
    """True while `pid` is the process started at `start` and has not exited.

    A process that exited but is not yet reaped (a zombie: our own child when `up` ran in
    this process, e.g. under pytest) counts as gone, and is reaped here if it is ours.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    if fields[19] != start:
        return False
    if fields[0] == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _kill(pid: int, start: str | None, grace: float = 10) -> None:
    if start is None or not _running(pid, start):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _running(pid, start):
        time.sleep(0.1)
    if _running(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running(pid, start):
            time.sleep(0.05)


def _kill_all(procs: Sequence[tuple[int, str | None]], grace: float = 10) -> None:
    """SIGTERM every process of `procs` (pid, start time) at once, SIGKILL what outlives
    `grace`; a pid whose start time differs is another process and is left alone."""
    live = [(pid, start) for pid, start in procs if start is not None and _running(pid, start)]
    for pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_running(p, s) for p, s in live):
        time.sleep(0.1)
    for pid, start in live:
        _kill(pid, start, grace=0)


def _mounts_under(prefixes: list[str]) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def _delete_workloads(state: State, say: Say) -> None:
    """Delete every pod so the kubelet runs CNI DEL and removes sandboxes (best effort)."""
    try:
        from kubernetes import client, config
    except ImportError:  # pragma: no cover
        return
    for spec in _recorded_specs(state):
        kc = base_dir() / spec.name / "admin.kubeconfig"
        if not kc.is_file():
            continue
        try:
            core = client.CoreV1Api(config.new_client_from_config(str(kc)))
            apps = client.AppsV1Api(core.api_client)
            for kind in ("deployment", "daemon_set", "stateful_set", "replica_set"):
                for ns in core.list_namespace(_request_timeout=5).items:
                    if ns.metadata is not None:
                        getattr(apps, f"delete_collection_namespaced_{kind}")(
                            ns.metadata.name, _request_timeout=5)
            for pod in core.list_pod_for_all_namespaces(_request_timeout=5).items:
                meta = pod.metadata
                if meta is not None and meta.name and meta.namespace:
                    core.delete_namespaced_pod(meta.name, meta.namespace,
                                               grace_period_seconds=0, _request_timeout=5)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if not core.list_pod_for_all_namespaces(_request_timeout=5).items:
                    break
                time.sleep(0.5)
        except Exception as exc:  # teardown goes on whatever the API says
            say(f"kube-clusters: {spec.name}: could not delete pods cleanly ({exc})")


def _swept_state(path: Path) -> State | None:
    """Without a state file: what of ours can still be found by its name, as a state.

    That happens when code that knew fewer nodes tore the clusters down (it removed the
    file and left the other nodes' containers running in our cgroups), or when the file was
    lost. Found by the names only we use (namespaces, links, cgroups, socket paths, the
    rule comment); `ip_forward` is left alone, since its old value is not known.
    """
    found = leftovers()
    if not found:
        return None
    state = State(path)  # the file does not exist: empty lists
    netns = _sh("ip", "netns", "list", check=False).split()
    for spec in CLUSTERS:
        for n in spec.possible_nodes:
            if n.netns in netns:
                state.data["netns"].append(n.netns)
            for link in (n.host_veth, n.peer_veth):
                if Path(f"/sys/class/net/{link}").exists():
                    state.data["links"].append(link)
        if (base_dir() / spec.name).is_dir():
            state.data["dirs"].append(str(base_dir() / spec.name))
    for table in ("filter", "nat"):
        for line in _sh("iptables", "-t", table, "-S", check=False).splitlines():
            words = shlex.split(line)
            if COMMENT in words and words[:1] == ["-A"]:
                state.data["iptables"].append([table, *words[1:]])
    return state


def _down_locked(say: Say, keep_logs: bool = False) -> None:
    path = base_dir() / "state.json"
    if path.is_file():
        state = State(path)
    else:
        swept = _swept_state(path)
        if swept is None:
            say("kube-clusters: nothing to tear down")
            return
        say("kube-clusters: no state file, but parts of ours are left; removing those")
        state = swept
    pids = {name: (pid, start) for name, pid, start in state.data["pids"]}

    def stop(suffix: str) -> None:
        # All of one kind at once (a kubelet per node): their grace periods overlap.
        _kill_all([(pid, start) for name, (pid, start) in pids.items()
                   if name.endswith("/" + suffix)])

    if any(_running(p, s) for n, (p, s) in pids.items() if n.endswith("/kube-apiserver")):
        _delete_workloads(state, say)
    stop("kube-proxy")
    stop("kubelet")
    # Containers the kubelet left: their network namespaces, then the tasks themselves.
    specs = _teardown_specs(state)
    sockets = _possible_sockets(state, specs)
    pod_netns: set[str] = set()
    leftover: list[tuple[list[str], list[str]]] = []
    for sock in sockets:
        if not sock.is_socket():
            continue
        ctr = ["ctr", "--address", str(sock), "-n", "k8s.io"]
        ids = _sh(*ctr, "containers", "ls", "-q", check=False).split()
        for cid in ids:
            with contextlib.suppress(Exception):
                info = json.loads(_sh(*ctr, "containers", "info", cid, check=False))
                for ns in info["Spec"]["linux"]["namespaces"]:
                    ns_path = ns.get("path", "")
                    if ns.get("type") == "network" and "/netns/cni-" in ns_path:
                        pod_netns.add(Path(ns_path).name)
            _sh(*ctr, "tasks", "kill", "-s", "SIGKILL", cid, check=False)
        leftover.append((ctr, ids))
    if any(ids for _, ids in leftover):
        time.sleep(0.5)
    for ctr, ids in leftover:
        for cid in ids:
            _sh(*ctr, "tasks", "delete", "-f", cid, check=False)
            _sh(*ctr, "containers", "delete", cid, check=False)
    stop("containerd")
    for comp in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        stop(comp)
    # Shims whose containerd is gone: they carry our socket path in their command line.
    _kill_all([(pid, _proc_start_time(pid)) for pid in _processes_naming(sockets)], grace=2)
    before = set(state.data.get("pod_netns_before", []))
    # CNI's cache names the pod namespaces of our networks too, also those of containers
    # that no containerd lists any more (their containerd was stopped first).
    cni_results = _our_cni_results(specs)
    ours = (pod_netns - before) | {n for _, n in cni_results if n}
    dirs = list(state.data["dirs"])
    mounts = _mounts_under([*dirs, *(f"/run/netns/{n}" for n in ours)])
    for m in mounts:
        if subprocess.run(["umount", m], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)
    for n in ours:
        with contextlib.suppress(OSError):
            Path(f"/run/netns/{n}").unlink()
    for result, _ in cni_results:
        result.unlink(missing_ok=True)
    # Cgroups depth-first: the kubelet made pod and QoS cgroups under ours, also in the v2
    # (`unified`) hierarchy, where we made none: our name in any hierarchy is ours.
    cgroups = set(state.data["cgroups"])
    for spec in specs:
        for node in spec.possible_nodes:
            cgroups |= {str(h / node.cgroup) for h in Path("/sys/fs/cgroup").iterdir()
                        if (h / node.cgroup).is_dir()}
    # Whatever still runs in our cgroups is a container whose shim or containerd died before
    # its task was killed (say, a teardown by code that did not know every node): ours by
    # where it runs, so it goes, or its cgroup could not be removed.
    _kill_all([(pid, _proc_start_time(pid)) for pid in _processes_in(cgroups)], grace=2)
    for cg in sorted(cgroups):
        root = Path(cg)
        if root.is_dir():
            for sub in sorted((p for p in root.rglob("*") if p.is_dir()),
                              key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()
    for route in state.data["routes"]:
        _sh("ip", "route", "del", *route, check=False)
    for ns in state.data["netns"]:
        _sh("ip", "netns", "del", ns, check=False)
    for link in state.data["links"]:
        _sh("ip", "link", "del", link, check=False)
    for table, chain, *spec in state.data["iptables"]:
        _sh("iptables", "-t", table, "-D", chain, *spec, check=False)
    if "ip_forward" in state.data["sysctl"]:
        _sh("sysctl", "-qw", f"net.ipv4.ip_forward={state.data['sysctl']['ip_forward']}")
    for d in dirs:
        if keep_logs:
            for child in Path(d).iterdir() if Path(d).is_dir() else []:
                if child.name != "logs":
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        else:
            shutil.rmtree(d, ignore_errors=True)
    kubeconfig_path().unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    say("kube-clusters: down")


def down(say: Say = print) -> None:
    """Remove everything `up` created (also after a failed or interrupted `up`)."""
    with _lock():
        _down_locked(say)


def _teardown_specs(state: State) -> tuple[ClusterSpec, ...]:
    """The clusters `up` recorded, and the default ones (names of an older state file)."""
    specs = list(_recorded_specs(state))
    specs += [c for c in CLUSTERS if c.name not in {s.name for s in specs}]
    return tuple(specs)


def _possible_sockets(state: State | None, specs: Sequence[ClusterSpec]) -> list[Path]:
    """Every containerd socket of ours: recorded ones, and where any node's would be."""
    found = [Path(p) for p in state.data["sockets"]] if state is not None else []
    for spec in specs:
        for n in spec.possible_nodes:
            sock = n.dir(base_dir() / spec.name) / "containerd" / "containerd.sock"
            if sock not in found:
                found.append(sock)
    return found


def _processes_naming(paths: Sequence[Path]) -> list[int]:
    """Pids of processes whose command line names one of `paths` (our containerd shims)."""
    markers = [str(p).encode() for p in paths]
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if any(m + b"\0" in cmdline + b"\0" for m in markers):
                pids.append(int(proc.name))
    return pids


CNI_RESULTS = Path("/var/lib/cni/results")


def _our_cni_results(specs: Sequence[ClusterSpec]) -> list[tuple[Path, str | None]]:
    """CNI's cached results of our pods, with the pod network namespace each names.

    libcni keeps them in a fixed host directory, whatever the containerd; a pod whose
    sandbox was never torn down by CNI DEL leaves its files there. Ours: the network is one
    of ours (`sfk-up`, `sfk-down`: names only this harness uses), or it is the loopback
    network's result for one of those containers.
    """
    networks = {f"sfk-{s.short}" for s in specs}
    entries = []
    for f in sorted(CNI_RESULTS.iterdir()) if CNI_RESULTS.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            entries.append((f, json.loads(f.read_text())))
    ids = {d.get("containerId") for _, d in entries if d.get("networkName") in networks}
    found: list[tuple[Path, str | None]] = []
    for f, d in entries:
        if d.get("networkName") in networks or (
                d.get("networkName") == "cni-loopback" and d.get("containerId") in ids):
            netns = None
            for iface in (d.get("result") or {}).get("interfaces") or []:
                sandbox = Path(iface.get("sandbox") or "/")
                if sandbox.parent.name == "netns" and sandbox.name.startswith("cni-"):
                    netns = sandbox.name
            found.append((f, netns))
    return found


def _processes_in(cgroups: set[str]) -> list[int]:
    """Pids in any of `cgroups` or below them."""
    pids: set[int] = set()
    for cg in cgroups:
        root = Path(cg)
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(x) for x in procs.read_text().split()}
    pids.discard(os.getpid())
    return sorted(pids)


def leftovers() -> list[str]:
    """What of ours is still on the machine (empty after a clean `down`).

    It looks for every node the address plan allows, not only the recorded ones, so a
    count that changed between `up` and `down` cannot hide anything.
    """
    found = []
    netns = _sh("ip", "netns", "list", check=False).split()
    routes = _sh("ip", "-4", "route", "show", check=False).splitlines()
    for spec in CLUSTERS:
        d = base_dir() / spec.name
        for n in spec.possible_nodes:
            if n.netns in netns:
                found.append(f"netns {n.netns}")
            for link in (n.host_veth, n.peer_veth):
                if Path(f"/sys/class/net/{link}").exists():
                    found.append(f"link {link}")
            for hier in Path("/sys/fs/cgroup").iterdir():
                if (hier / n.cgroup).exists():
                    found.append(f"cgroup {hier / n.cgroup}")
            for r in routes:
                if r.split()[0] in (n.pod_cidr, spec.service_cidr):
                    found.append(f"route {r}")
        if _mounts_under([str(d)]):
            found.append(f"mounts under {d}")
    for result, pod_netns in _our_cni_results(CLUSTERS):
        found.append(f"cni result {result}")
        if pod_netns and Path(f"/run/netns/{pod_netns}").exists():
            found.append(f"pod netns {pod_netns}")
    for pid in _processes_naming(_possible_sockets(None, CLUSTERS)):
        args = _sh("ps", "-o", "args=", "-p", str(pid), check=False).strip()
        found.append(f"process {pid} ({args[:80]})")
    for table in ("filter", "nat"):
        for line in _sh("iptables", "-t", table, "-S", check=False).splitlines():
            if COMMENT in line:
                found.append(f"iptables -t {table} {line}")
    return sorted(set(found), key=found.index)
