"""One node of a test cluster: a network namespace with containerd, kubelet and kube-proxy.

The node's daemons run with `nsenter --net` (not `ip netns exec`, which would give them a
private mount namespace and hide the kubelet's volume mounts from runc), each with its own
root, state and socket paths under the node's directory, so two clusters' nodes share
nothing but the fixed host paths teardown cleans (see `_teardown`).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kube_harness import _images
from kube_harness._host import Daemons, sh, wait, write
from kube_harness._plan import CLUSTER_DOMAIN, NodeSpec, Say


class Node:
    """One node of a cluster; its network is made by `_network.node_network`."""

    def __init__(self, spec: NodeSpec, cluster_dir: Path, daemons: Daemons, say: Say) -> None:
        self.spec = spec
        self.daemons = daemons
        self.state = daemons.state
        self.say = say
        self.dir = spec.dir(cluster_dir)
        self.sock = self.dir / "containerd" / "containerd.sock"
        self.kubelet_user = "kubelet" if spec.k == 1 else f"kubelet-{spec.name}"
        self.kubelet_serving: tuple[Path, Path] | None = None

    def _spawn(self, name: str, argv: list[str]) -> None:
        n = self.spec
        self.daemons.spawn(name, argv, netns=n.netns, node=n.name, log_prefix=n.log_prefix())

    def start_containerd(self) -> None:
        n, c = self.spec, self.spec.cluster
        d = self.dir
        cdir = d / "containerd"
        pause = _images.image_set()["pause"].ref
        write(cdir / "config.toml", f"""version = 2
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
        write(d / "cni" / "net.d" / "10-sfk.conflist", json.dumps({
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
        self.state.add("sockets", str(self.sock))
        self._spawn("containerd", ["containerd", "--config", str(cdir / "config.toml")])
        wait(f"{c.name} {n.name} containerd", lambda: self.sock.is_socket() and self._ctr(
            "version").strip() != "", 30, self.daemons.alive(f"{n.name}/containerd"))

    def start_kubelet_and_proxy(self, kubeconfigs: dict[str, Path], ca: Path,
                                kube_bin: Path) -> None:
        n, c = self.spec, self.spec.cluster
        d = self.dir
        kc = kubeconfigs
        write(d / "resolv.conf", "nameserver 127.0.0.1\n")
        assert self.kubelet_serving is not None
        kubelet_crt, kubelet_key = self.kubelet_serving
        write(d / "kubelet-config.yaml", yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": n.node_ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(ca)}},
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
            # The kubelet refreshes Secret volumes at a pod's sync, every syncFrequency (1 m
            # by default, plus jitter): a rotated signing CA or a new API key reached its pod
            # 30-50 s late, most of the Kubernetes key-compromise drill's waits. 10 s here
            # keeps the test command's time; our code waits on the real signal either way,
            # and the runbook gives the times measured with the default.
            "syncFrequency": "10s",
        }))
        self._spawn("kubelet", [
            str(kube_bin / "kubelet"),
            f"--config={d / 'kubelet-config.yaml'}",
            f"--kubeconfig={kc[self.kubelet_user]}",
            f"--root-dir={d / 'kubelet'}",
            f"--cert-dir={d / 'kubelet' / 'pki'}",
            f"--hostname-override={n.name}",
            f"--node-ip={n.node_ip}",
            f"--node-labels=spire-fabric.local/cluster={c.name}",
        ])
        write(d / "kube-proxy-config.yaml", yaml.safe_dump({
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
            # Not masqueradeAll: a pod calling a Service backed by a pod on another node
            # must arrive with its own address, or the NetworkPolicy enforcer of the
            # destination node sees a node address and no pod to match a policy's peers.
            # kube-proxy still masquerades what needs it (NodePorts, hairpin, and service
            # traffic from outside `clusterCIDR`, such as the host's through the first node).
            "iptables": {"masqueradeAll": False, "localhostNodePorts": False},
        }))
        self._spawn("kube-proxy", [
            str(kube_bin / "kube-proxy"), f"--config={d / 'kube-proxy-config.yaml'}",
        ])

    def _ctr(self, *args: str) -> str:
        return sh("ctr", "--address", str(self.sock), "-n", "k8s.io", *args)

    def load_image(self, name: str | _images.Image) -> str:
        image = _images.image_named(name)
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

