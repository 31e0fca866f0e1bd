"""Bringing the two test clusters up, reading their status, loading images into them.

`up` is idempotent (clusters that are up with the asked node counts are left alone) and
undoes a failed bring-up itself; `status` and `load_image` only read the recorded state.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kube_harness import _build, _images
from kube_harness._control_plane import Cluster, write_kubeconfig
from kube_harness._host import (
    State,
    claim_host_socket_root,
    cluster_lock,
    https_ok,
    recorded_specs,
    running,
    state_path,
)
from kube_harness._network import host_network, node_network
from kube_harness._plan import (
    CLUSTERS,
    NODE_IMAGES,
    ClusterSpec,
    KubeClusterError,
    Say,
    base_dir,
    kubeconfig_path,
)
from kube_harness._teardown import down_locked


def up(say: Say = print, *, timeout: float = 180,
       clusters: Sequence[ClusterSpec] = CLUSTERS) -> dict[str, Any]:
    """Bring both clusters up (idempotent: if they are up and healthy, do nothing).

    `clusters` sets the node count of each (default: upstream 1, downstream 3). Clusters
    that are up with other node counts are torn down and brought up again.
    """
    if os.geteuid() != 0:
        raise KubeClusterError("the test clusters need root (network namespaces, cgroups)")
    clusters = tuple(clusters)
    with cluster_lock():
        current = status_locked()
        path = base_dir() / "state.json"
        same_shape = current["state"] and recorded_specs(State(path)) == clusters
        if current["up"] and same_shape:
            say("kube-clusters: already up")
            return current
        if current["up"]:
            say("kube-clusters: up with other node counts; tearing them down first")
            down_locked(say)
        elif current["state"]:
            say("kube-clusters: tearing down a previous half-started set first")
            down_locked(say)
        t0 = time.monotonic()
        for name in ("etcd", "kubernetes", "coredns", "kube-network-policies"):
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
                made.append(Cluster(spec, state, say))
            # Each phase's time is reported: where a slow `up` spends it.
            phases: list[str] = []
            mark = time.monotonic()

            def done(phase: str) -> None:
                nonlocal mark
                now = time.monotonic()
                phases.append(f"{phase} {now - mark:.1f} s")
                mark = now

            host_network(state, clusters)
            claim_host_socket_root(state)
            for c in made:
                for n in c.nodes:
                    node_network(n.spec, state)
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
            write_kubeconfig(made)
        except BaseException:
            say("kube-clusters: bring-up failed; logs are in "
                f"{base}/<cluster>/logs (kept until the next up)")
            down_locked(say, keep_logs=True)
            raise
        nodes = sum(c.nodes for c in clusters)
        say(f"kube-clusters: {', '.join(phases)}")
        say(f"kube-clusters: both clusters ({nodes} nodes) up in {time.monotonic() - t0:.1f} s; "
            f"KUBECONFIG={kubeconfig_path()}")
        return status_locked()


def load_image(cluster: str, name: str | _images.Image, say: Say = print) -> str:
    """Load one of `_images.image_set()` (or another `_images.Image`) into every node of a
    running cluster; return its ref.

    Every node: a pod (a SPIRE agent of a DaemonSet, a server the scheduler places) may run
    on any of them, and `imagePullPolicy: Never` finds only what that node's containerd has.
    """
    specs = recorded_specs(State(state_path()))
    spec = next((c for c in specs if c.name == cluster), None)
    if spec is None:
        raise KubeClusterError(f"no test cluster named {cluster!r}")
    c = Cluster(spec, State(state_path()), say)
    return c.load_image(name)


def status_locked() -> dict[str, Any]:
    path = base_dir() / "state.json"
    out: dict[str, Any] = {"up": False, "state": path.is_file(), "clusters": {},
                           "kubeconfig": str(kubeconfig_path()),
                           "kubectl": _kubectl_if_built()}
    if not path.is_file():
        return out
    state = State(path)
    procs = {}
    for name, pid, start in state.data["pids"]:
        procs[name] = start is not None and running(pid, start)
    healthy = bool(procs) and all(procs.values())
    for spec in recorded_specs(state):
        ready = False
        crt = base_dir() / spec.name / "pki" / "admin.crt"
        with contextlib.suppress(Exception):
            ready = https_ok(f"{spec.api_url}/readyz", base_dir() / spec.name / "pki" / "ca.crt",
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
    with cluster_lock():
        return status_locked()


def _kubectl_if_built() -> str | None:
    kubectl = _build.PARTS["kubectl"].bin_dir / "kubectl"
    return str(kubectl) if _build.kubectl_built() else None
