"""What the harness does on the host: its state file and lock, commands, files, waits and
the processes it starts (and only those, by pid and start time).

Everything `up` creates is recorded in `<base>/state.json` as it is created, so `down`
removes exactly that, even after a half-finished `up`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kube_harness._plan import CLUSTERS, ClusterSpec, KubeClusterError, base_dir
from spire_fabric._filelock import file_lock
from spire_fabric._run import run
from spire_fabric._wait import wait_until


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


def state_path() -> Path:
    return base_dir() / "state.json"


def recorded_specs(state: State) -> tuple[ClusterSpec, ...]:
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


@contextlib.contextmanager
def cluster_lock() -> Iterator[None]:
    """Held while the clusters are changed or read: one `up`/`down`/`status` at a time."""
    with file_lock(base_dir() / ".lock"):
        yield


# ------------------------------------------------------------------------ commands


def sh(*cmd: str, check: bool = True, netns: str | None = None) -> str:
    """Run a host command (in node namespace `netns`, if given); return its stdout."""
    argv = list(cmd)
    if netns:
        argv = ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]
    return run(argv, check=check, what=" ".join(argv), tail_lines=3,
               error=KubeClusterError).stdout


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def wait(what: str, probe: Callable[[], bool], timeout: float,
         proc_alive: Callable[[], bool] | None = None) -> None:
    """`wait_until` with the harness's error; stops at once if `proc_alive` says it died."""

    def abort() -> str | None:
        return "the process exited" if proc_alive is not None and not proc_alive() else None

    wait_until(probe, timeout, what, interval=0.3, abort=abort, error=KubeClusterError)


def https_ok(url: str, ca: Path, crt: Path, key: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(crt), str(key))
    with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
        status: int = resp.status
    return status == 200


def port_free(host: str, port: int) -> bool:
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


# ------------------------------------------------------------------------ processes


class Daemons:
    """The long-running processes of one cluster: started in their own session, logging to
    `<cluster dir>/logs/`, each recorded (pid + start time) in the state as it starts."""

    def __init__(self, cluster: str, cluster_dir: Path, state: State) -> None:
        self.cluster = cluster
        self.dir = cluster_dir
        self.state = state
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, argv: list[str], *, netns: str | None = None,
              node: str | None = None, log_prefix: str = "") -> None:
        """Start `argv`; a node's process runs with `nsenter --net` in the node's namespace
        and is named `<node>/<name>`, the control plane's are named `<name>`."""
        if netns is not None:
            argv = ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]
        log = open(self.dir / "logs" / f"{log_prefix}{name}.log", "ab")  # noqa: SIM115
        if node is not None:
            name = f"{node}/{name}"
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.dir,
        )
        log.close()
        self.procs[name] = proc
        start = proc_start_time(proc.pid)
        self.state.add("pids", [f"{self.cluster}/{name}", proc.pid, start])

    def alive(self, name: str) -> Callable[[], bool]:
        return lambda: self.procs[name].poll() is None


def proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def running(pid: int, start: str | None) -> bool:
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


def _gone(procs: Sequence[tuple[int, str | None]]) -> bool:
    return not any(running(p, s) for p, s in procs)


def kill_all(procs: Sequence[tuple[int, str | None]], grace: float = 10) -> None:
    """SIGTERM every process of `procs` (pid, start time) at once, SIGKILL what outlives
    `grace`; a pid whose start time differs is another process and is left alone."""
    live = [(pid, start) for pid, start in procs if start is not None and running(pid, start)]
    for pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(KubeClusterError):
        wait_until(lambda: _gone(live), grace, "processes stopped", interval=0.1,
                   error=KubeClusterError)
    left = [(p, s) for p, s in live if running(p, s)]
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(KubeClusterError):
        wait_until(lambda: _gone(left), 10, "killed processes gone", interval=0.05,
                   error=KubeClusterError)


# The agents' hostPath socket directories (HOST_SOCKET_ROOT/<agent>). The nodes share this
# machine's filesystem, so the kubelets create them here, outside the harness's own
# directory: the harness makes their root itself, marked, so `down` removes it and
# `leftovers` finds it, while a root that holds something else (someone else's) is left alone.
HOST_SOCKETS_MARKER = ".spire-fabric-test-clusters"


def _host_socket_root() -> Path:
    from spire_fabric.render.kubernetes._common import HOST_SOCKET_ROOT

    return Path(HOST_SOCKET_ROOT)


def claim_host_socket_root(state: State, root: Path | None = None) -> None:
    root = root or _host_socket_root()
    if root.exists() and not (root / HOST_SOCKETS_MARKER).exists() and any(root.iterdir()):
        return
    root.mkdir(parents=True, exist_ok=True)
    (root / HOST_SOCKETS_MARKER).write_text("made by tests/kube_harness; `down` removes it\n")
    state.add("dirs", str(root))


def claimed_host_socket_root(root: Path | None = None) -> Path | None:
    """The socket root if the harness made it (for `leftovers`)."""
    root = root or _host_socket_root()
    return root if (root / HOST_SOCKETS_MARKER).exists() else None
