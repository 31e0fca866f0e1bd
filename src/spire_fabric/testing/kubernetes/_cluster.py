"""Two real Kubernetes clusters on one machine: bring-up, status, teardown.

Each cluster has its own etcd, kube-apiserver, kube-controller-manager and kube-scheduler
(host processes; the API server listens on the host side of the node's veth pair), and its
own node: containerd, kubelet and kube-proxy started with `nsenter --net` inside a network
namespace of the node's own (not `ip netns exec`, which would give them a private mount
namespace and hide the kubelet's volume mounts from runc). CoreDNS runs as a pod.

Everything created is recorded in `<base>/state.json` as it is created, so `down` removes
exactly that (processes by pid, mounts under our directories, our network namespaces,
veths, iptables rules tagged with our comment, our cgroups) even after a half-finished
`up`, and puts `net.ipv4.ip_forward` back as it found it.

Network (all private ranges unused here; N = 1 upstream, 2 downstream):
- node link 10.250.N.0/30: host side `sfk-<short>0` = .1 (API server), node `eth0` = .2;
- pods 10.251.N.0/24 on a bridge inside the node namespace, masqueraded to the node address;
- services 10.252.N.0/24 (API 10.252.N.1, DNS 10.252.N.10).
The fence: the host forwards from a node link only to the other node link; everything else
a node or pod sends to be forwarded is dropped, and the host itself rejects our ranges on
any interface that is not ours. Untranslated service addresses are rejected in the node.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
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
PV_COUNT = 8
# Images every node gets at start; the rest are loaded on demand with `load_image`.
NODE_IMAGES = ("pause", "coredns", "python")

Say = Callable[[str], None]


class KubeClusterError(SpireFabricError, RuntimeError):
    """The test clusters could not be brought up, reached or torn down."""


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    short: str
    index: int

    @property
    def host_ip(self) -> str:
        return f"10.250.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.index}.2"

    @property
    def link_cidr(self) -> str:
        return f"10.250.{self.index}.0/30"

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
        return f"sfk-{self.short}"

    @property
    def host_veth(self) -> str:
        return f"sfk-{self.short}0"

    @property
    def node_name(self) -> str:
        return f"{self.short}stream-node"

    @property
    def cgroup(self) -> str:
        return f"sfk-{self.short}stream"

    @property
    def api_url(self) -> str:
        return f"https://{self.host_ip}:6443"

    def port(self, offset: int) -> int:
        # Below the 30000-60000 loopback range other tests on this machine use.
        return 21000 + 100 * self.index + offset


CLUSTERS = (
    ClusterSpec("upstream-spire-cluster", "up", 1),
    ClusterSpec("downstream-spire-cluster", "down", 2),
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
    with socket.socket() as s:
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
        self.sock = self.dir / "containerd" / "containerd.sock"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- processes

    def spawn(self, name: str, argv: list[str], *, in_node: bool = False) -> None:
        if in_node:
            argv = ["nsenter", f"--net=/run/netns/{self.spec.netns}", "--", *argv]
        log = open(self.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
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

    # -- host network

    def network(self) -> None:
        s = self.spec
        _sh("ip", "netns", "add", s.netns)
        self.state.add("netns", s.netns)
        tmp_peer = f"{s.host_veth[:-1]}1"
        _sh("ip", "link", "add", s.host_veth, "type", "veth", "peer", "name", tmp_peer)
        self.state.add("links", s.host_veth)
        _sh("ip", "link", "set", tmp_peer, "netns", s.netns)
        _sh("ip", "link", "set", tmp_peer, "name", "eth0", netns=s.netns)
        _sh("ip", "addr", "add", f"{s.host_ip}/30", "dev", s.host_veth)
        _sh("ip", "link", "set", s.host_veth, "up")
        _sh("ip", "addr", "add", f"{s.node_ip}/30", "dev", "eth0", netns=s.netns)
        _sh("ip", "link", "set", "eth0", "up", netns=s.netns)
        _sh("ip", "link", "set", "lo", "up", netns=s.netns)
        _sh("ip", "route", "add", "default", "via", s.host_ip, netns=s.netns)
        for cidr in (s.pod_cidr, s.service_cidr):
            _sh("ip", "route", "add", cidr, "via", s.node_ip, "dev", s.host_veth)
        _sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=s.netns)
        with contextlib.suppress(KubeClusterError):
            _sh("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", netns=s.netns)
        # Inside the node (gone with its namespace): a service address that kube-proxy did
        # not translate has nowhere to go but off the machine, so refuse it here.
        for chain in ("FORWARD", "OUTPUT"):
            _sh("iptables", "-A", chain, "-d", s.service_cidr, "-m", "comment",
                "--comment", COMMENT, "-j", "REJECT", netns=s.netns)

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
        self.kubelet_serving = pki.issue(
            "kubelet-serving", s.node_name, server=True, dns=(s.node_name,), ips=(s.node_ip,))
        self.sa_key, self.sa_pub = pki.service_account_key()
        users = {
            "admin": ("kubernetes-admin", "system:masters"),
            "controller-manager": ("system:kube-controller-manager", None),
            "scheduler": ("system:kube-scheduler", None),
            "kube-proxy": ("system:kube-proxy", None),
            "kubelet": (f"system:node:{s.node_name}", "system:nodes"),
        }
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

    # -- node

    def node(self) -> None:
        s = self.spec
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
            "name": f"sfk-{s.short}",
            "plugins": [
                {"type": "bridge", "bridge": "sfk-pods", "isGateway": True,
                 "isDefaultGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": s.pod_cidr}]],
                          "dataDir": str(d / "cni" / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=1))
        self.cgroups()
        self.spawn("containerd", ["containerd", "--config", str(cdir / "config.toml")],
                   in_node=True)
        _wait(f"{s.name} containerd", lambda: self.sock.is_socket() and self._ctr(
            "version").strip() != "", 30, self.alive("containerd"))
        for name in NODE_IMAGES:
            self.load_image(name)
        _write(d / "resolv.conf", "nameserver 127.0.0.1\n")
        kubelet_crt, kubelet_key = self.kubelet_serving
        _write(d / "kubelet-config.yaml", yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": s.node_ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.ca)}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(kubelet_crt),
            "tlsPrivateKeyFile": str(kubelet_key),
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{s.cgroup}",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            "clusterDNS": [s.dns_ip],
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
        self.spawn("kubelet", [
            str(self.kube_bin / "kubelet"),
            f"--config={d / 'kubelet-config.yaml'}",
            f"--kubeconfig={self.kubeconfigs['kubelet']}",
            f"--root-dir={d / 'kubelet'}",
            f"--cert-dir={d / 'kubelet' / 'pki'}",
            f"--hostname-override={s.node_name}",
            f"--node-ip={s.node_ip}",
            f"--node-labels=spire-fabric.local/cluster={s.name}",
        ], in_node=True)
        _write(d / "kube-proxy-config.yaml", yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfigs["kube-proxy"])},
            "mode": "iptables",
            "hostnameOverride": s.node_name,
            "bindAddress": s.node_ip,
            "clusterCIDR": s.pod_cidr,
            "nodePortAddresses": [f"{s.node_ip}/32"],
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
            # root cannot change the conntrack sysctls here: leave them alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
            "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        }))
        self.spawn("kube-proxy", [
            str(self.kube_bin / "kube-proxy"), f"--config={d / 'kube-proxy-config.yaml'}",
        ], in_node=True)

    def _ctr(self, *args: str) -> str:
        return _sh("ctr", "--address", str(self.sock), "-n", "k8s.io", *args)

    def load_image(self, name: str) -> str:
        image = _images.image_set()[name]
        tarball = _images.ensure_image(image, self.say)
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
                self.state.add("cgroups", str(cg))
            if hier.name.startswith("cpuset") and (hier / "cpuset.cpus").exists():
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (cg / f).write_text((hier / f).read_text())

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

        def node_ready() -> bool:
            node = self.core.read_node(s.node_name)
            conditions = (node.status.conditions if node.status else None) or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        _wait(f"{s.name} node {s.node_name} Ready", node_ready, timeout, self.alive("kubelet"))

        def dns_ready() -> bool:
            dep = self.apps.read_namespaced_deployment("coredns", "kube-system")
            return ((dep.status.ready_replicas if dep.status else None) or 0) >= 1

        _wait(f"{s.name} CoreDNS ready", dns_ready, timeout)


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


def _host_network(state: State) -> None:
    if "ip_forward" not in state.data["sysctl"]:
        state.data["sysctl"]["ip_forward"] = Path("/proc/sys/net/ipv4/ip_forward").read_text(
        ).strip()
        state.save()
    _sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    a, b = (c.host_veth for c in CLUSTERS)
    # Inserted in reverse so they end up first in this order.
    rules: list[list[str]] = [
        ["filter", "FORWARD", "-i", a, "-o", b, "-j", "ACCEPT"],
        ["filter", "FORWARD", "-i", b, "-o", a, "-j", "ACCEPT"],
        ["filter", "FORWARD", "-i", "sfk-+", "-j", "DROP"],
        ["filter", "FORWARD", "-o", "sfk-+", "-j", "DROP"],
        # The host's own addresses in the range (API servers) are reached over `lo`.
        ["filter", "OUTPUT", "-d", OUTSIDE_RANGE, "-m", "addrtype", "!", "--dst-type",
         "LOCAL", "!", "-o", "sfk-+", "-j", "REJECT"],
        ["filter", "OUTPUT", "-d", SERVICE_RANGE, "!", "-o", "sfk-+", "-j", "REJECT"],
    ]
    for rule in reversed(rules):
        table, chain, *spec = rule
        full = [*spec[:-2], "-m", "comment", "--comment", COMMENT, *spec[-2:]]
        _sh("iptables", "-t", table, "-I", chain, "1", *full)
        state.add("iptables", [table, chain, *full])


def up(say: Say = print, *, timeout: float = 180) -> dict[str, Any]:
    """Bring both clusters up (idempotent: if they are up and healthy, do nothing)."""
    if os.geteuid() != 0:
        raise KubeClusterError("the test clusters need root (network namespaces, cgroups)")
    with _lock():
        current = _status_locked()
        if current["up"]:
            say("kube-clusters: already up")
            return current
        if current["state"]:
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
        state.data["pod_netns_before"] = sorted(p.name for p in Path("/run/netns").glob("cni-*")
                                                ) if Path("/run/netns").is_dir() else []
        state.save()
        try:
            clusters = []
            for spec in CLUSTERS:
                shutil.rmtree(base / spec.name, ignore_errors=True)
                (base / spec.name / "logs").mkdir(parents=True)
                state.add("dirs", str(base / spec.name))
                clusters.append(_Cluster(spec, state, say))
            _host_network(state)
            for c in clusters:
                c.network()
                c.pki()
            for c in clusters:
                c.control_plane()
            for c in clusters:
                c.node()
            for c in clusters:
                c.bootstrap_objects()
            for c in clusters:
                c.wait_ready(timeout)
            _write_kubeconfig(clusters)
        except BaseException:
            say("kube-clusters: bring-up failed; logs are in "
                f"{base}/<cluster>/logs (kept until the next up)")
            _down_locked(say, keep_logs=True)
            raise
        say(f"kube-clusters: both clusters up in {time.monotonic() - t0:.1f} s; "
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
    """Load one of `_images.image_set()` into a running cluster's node; return its ref."""
    spec = next(c for c in CLUSTERS if c.name == cluster)
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
    for spec in CLUSTERS:
        ready = False
        crt = base_dir() / spec.name / "pki" / "admin.crt"
        with contextlib.suppress(Exception):
            ready = _https_ok(f"{spec.api_url}/readyz", base_dir() / spec.name / "pki" / "ca.crt",
                              crt, crt.with_suffix(".key"))
        out["clusters"][spec.name] = {
            "api": spec.api_url, "node_ip": spec.node_ip, "api_ready": ready,
            "dir": str(base_dir() / spec.name),
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
    for spec in CLUSTERS:
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


def _down_locked(say: Say, keep_logs: bool = False) -> None:
    path = base_dir() / "state.json"
    if not path.is_file():
        say("kube-clusters: nothing to tear down")
        return
    state = State(path)
    pids = {name: (pid, start) for name, pid, start in state.data["pids"]}

    def stop(suffix: str) -> None:
        for name, (pid, start) in pids.items():
            if name.endswith("/" + suffix):
                _kill(pid, start)

    if any(_running(p, s) for n, (p, s) in pids.items() if n.endswith("/kube-apiserver")):
        _delete_workloads(state, say)
    stop("kube-proxy")
    stop("kubelet")
    # Containers the kubelet left: their network namespaces, then the tasks themselves.
    pod_netns: set[str] = set()
    for spec in CLUSTERS:
        sock = base_dir() / spec.name / "containerd" / "containerd.sock"
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
        time.sleep(0.5)
        for cid in ids:
            _sh(*ctr, "tasks", "delete", "-f", cid, check=False)
            _sh(*ctr, "containers", "delete", cid, check=False)
    stop("containerd")
    for comp in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        stop(comp)
    # Shims whose containerd is gone: they carry our socket path in their command line.
    for spec in CLUSTERS:
        marker = str(base_dir() / spec.name / "containerd" / "containerd.sock").encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes():
                    pid = int(proc.name)
                    _kill(pid, _proc_start_time(pid), grace=2)
    before = set(state.data.get("pod_netns_before", []))
    dirs = list(state.data["dirs"])
    mounts = _mounts_under([*dirs, *(f"/run/netns/{n}" for n in pod_netns - before)])
    for m in mounts:
        if subprocess.run(["umount", m], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)
    for n in pod_netns - before:
        with contextlib.suppress(OSError):
            Path(f"/run/netns/{n}").unlink()
    # Cgroups depth-first: the kubelet made pod and QoS cgroups under ours, also in the v2
    # (`unified`) hierarchy, where we made none: our name in any hierarchy is ours.
    cgroups = set(state.data["cgroups"])
    for spec in CLUSTERS:
        cgroups |= {str(h / spec.cgroup) for h in Path("/sys/fs/cgroup").iterdir()
                    if (h / spec.cgroup).is_dir()}
    for cg in sorted(cgroups):
        root = Path(cg)
        if root.is_dir():
            for sub in sorted((p for p in root.rglob("*") if p.is_dir()),
                              key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()
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
    path.unlink()
    say("kube-clusters: down")


def down(say: Say = print) -> None:
    """Remove everything `up` created (also after a failed or interrupted `up`)."""
    with _lock():
        _down_locked(say)


def leftovers() -> list[str]:
    """What of ours is still on the machine (empty after a clean `down`)."""
    found = []
    netns = _sh("ip", "netns", "list", check=False)
    for spec in CLUSTERS:
        if spec.netns in netns.split():
            found.append(f"netns {spec.netns}")
        if Path(f"/sys/class/net/{spec.host_veth}").exists():
            found.append(f"link {spec.host_veth}")
        for hier in Path("/sys/fs/cgroup").iterdir():
            if (hier / spec.cgroup).exists():
                found.append(f"cgroup {hier / spec.cgroup}")
        if _mounts_under([str(base_dir() / spec.name)]):
            found.append(f"mounts under {base_dir() / spec.name}")
    for table in ("filter", "nat"):
        for line in _sh("iptables", "-t", table, "-S", check=False).splitlines():
            if COMMENT in line:
                found.append(f"iptables -t {table} {line}")
    return found
