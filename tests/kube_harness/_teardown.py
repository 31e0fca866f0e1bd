"""Tearing the test clusters down: exactly what `up` recorded, and whatever of ours is
still found by the names only we use; and `leftovers`, which proves nothing is left.

Teardown order that leaves nothing behind (see docs/kubernetes-test-clusters.md): delete
workloads (so CNI DEL runs), stop kube-proxy and kubelet, kill and remove leftover
containers with `ctr`, stop containerd and the control plane, unmount everything under the
cluster directories and our pod namespaces, remove cgroups depth-first, delete the node
namespaces, links and routes, remove the tagged iptables rules, restore `ip_forward`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kube_harness._host import (
    State,
    claimed_host_socket_root,
    cluster_lock,
    kill_all,
    proc_start_time,
    recorded_specs,
    running,
    sh,
    state_path,
)
from kube_harness._plan import (
    CLUSTERS,
    COMMENT,
    ClusterSpec,
    KubeClusterError,
    Say,
    base_dir,
    kubeconfig_path,
)
from spire_fabric._wait import wait_until


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
    for spec in recorded_specs(state):
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
            with contextlib.suppress(KubeClusterError):  # what is left is killed below
                wait_until(functools.partial(_no_pods, core), 30,
                           f"{spec.name}: every pod deleted", interval=0.5,
                           error=KubeClusterError)
        except Exception as exc:  # teardown goes on whatever the API says
            say(f"kube-clusters: {spec.name}: could not delete pods cleanly ({exc})")


def _no_pods(core: Any) -> bool:
    return not core.list_pod_for_all_namespaces(_request_timeout=5).items


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
    netns = sh("ip", "netns", "list", check=False).split()
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
        for line in sh("iptables", "-t", table, "-S", check=False).splitlines():
            words = shlex.split(line)
            if COMMENT in words and words[:1] == ["-A"]:
                state.data["iptables"].append([table, *words[1:]])
    return state


def down_locked(say: Say, keep_logs: bool = False) -> None:
    path = state_path()
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
        kill_all([(pid, start) for name, (pid, start) in pids.items()
                   if name.endswith("/" + suffix)])

    if any(running(p, s) for n, (p, s) in pids.items() if n.endswith("/kube-apiserver")):
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
        ids = sh(*ctr, "containers", "ls", "-q", check=False).split()
        for cid in ids:
            with contextlib.suppress(Exception):
                info = json.loads(sh(*ctr, "containers", "info", cid, check=False))
                for ns in info["Spec"]["linux"]["namespaces"]:
                    ns_path = ns.get("path", "")
                    if ns.get("type") == "network" and "/netns/cni-" in ns_path:
                        pod_netns.add(Path(ns_path).name)
            sh(*ctr, "tasks", "kill", "-s", "SIGKILL", cid, check=False)
        leftover.append((ctr, ids))
    if any(ids for _, ids in leftover):
        time.sleep(0.5)
    for ctr, ids in leftover:
        for cid in ids:
            sh(*ctr, "tasks", "delete", "-f", cid, check=False)
            sh(*ctr, "containers", "delete", cid, check=False)
    stop("containerd")
    for comp in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        stop(comp)
    # Shims whose containerd is gone: they carry our socket path in their command line.
    kill_all([(pid, proc_start_time(pid)) for pid in _processes_naming(sockets)], grace=2)
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
    kill_all([(pid, proc_start_time(pid)) for pid in _processes_in(cgroups)], grace=2)
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
        sh("ip", "route", "del", *route, check=False)
    for ns in state.data["netns"]:
        sh("ip", "netns", "del", ns, check=False)
    for link in state.data["links"]:
        sh("ip", "link", "del", link, check=False)
    for table, chain, *spec in state.data["iptables"]:
        sh("iptables", "-t", table, "-D", chain, *spec, check=False)
    if "ip_forward" in state.data["sysctl"]:
        sh("sysctl", "-qw", f"net.ipv4.ip_forward={state.data['sysctl']['ip_forward']}")
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
    with cluster_lock():
        down_locked(say)


def _teardown_specs(state: State) -> tuple[ClusterSpec, ...]:
    """The clusters `up` recorded, and the default ones (names of an older state file)."""
    specs = list(recorded_specs(state))
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
    netns = sh("ip", "netns", "list", check=False).split()
    routes = sh("ip", "-4", "route", "show", check=False).splitlines()
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
        args = sh("ps", "-o", "args=", "-p", str(pid), check=False).strip()
        found.append(f"process {pid} ({args[:80]})")
    if (sockets := claimed_host_socket_root()) is not None:
        found.append(f"agent socket directories {sockets}")
    for table in ("filter", "nat"):
        for line in sh("iptables", "-t", table, "-S", check=False).splitlines():
            if COMMENT in line:
                found.append(f"iptables -t {table} {line}")
    return sorted(set(found), key=found.index)
