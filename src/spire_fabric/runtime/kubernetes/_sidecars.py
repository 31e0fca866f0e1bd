"""Sidecars on Kubernetes, seen from inside the pods: what `status` and `verify` need that
the API server cannot say.

Each read is one exec of a short Python program (the app's and the helper's images have
Python; ghostunnel's has no shell) in a container of the workload's own pod, or of a peer's:

- :func:`sidecar_facts`: in the workload's app container, the certificate its server
  sidecar presents on the pod's port (read, not trusted: status shows what is served) and
  the files a files-mode sidecar keeps in the shared emptyDir, with their modes;
- :func:`plain_port_from_peer`: in a pod of a workload that calls this one, whether the
  app's plain port answers on the pod's IP (it must not: the app binds 127.0.0.1) while the
  sidecar's port does (so a refusal is the binding's, not a broken route).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from spire_fabric.render.kubernetes import SVID_DIR, selector_labels, workload_cluster
from spire_fabric.runtime.kubernetes._clusters import ClusterApi
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._pods import exec_in_pod, running_pod
from spire_fabric.topology import Topology, Workload, workload_callers

__all__ = ["PeerProbe", "SidecarFacts", "plain_port_from_peer", "sidecar_facts"]

# Run in the app container: argv[1] the server sidecar's port (0: none), argv[2] the SVID
# directory ('' : none). Prints one JSON object.
_FACTS = r"""
import base64, json, os, socket, ssl, sys
port, svid_dir = int(sys.argv[1]), sys.argv[2]
out = {"presented": None, "files": {}}
if port:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True)
        out["presented"] = base64.b64encode(der).decode() if der else None
    except (OSError, ValueError) as err:
        out["presented_error"] = f"{type(err).__name__}: {err}"
if svid_dir and os.path.isdir(svid_dir):
    for name in sorted(os.listdir(svid_dir)):
        path = os.path.join(svid_dir, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        out["files"][name] = [base64.b64encode(data).decode(), os.stat(path).st_mode & 0o7777]
print(json.dumps(out))
"""

# Run in a peer's container: argv[1] the pod IP, then the ports to try. Prints, per port,
# "open" or the error's class and text.
_CONNECT = r"""
import json, socket, sys
out = {}
for port in sys.argv[2:]:
    try:
        with socket.create_connection((sys.argv[1], int(port)), timeout=3):
            out[port] = "open"
    except OSError as err:
        out[port] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
"""


@dataclass(frozen=True)
class SidecarFacts:
    """What one workload's pod shows from the inside."""

    pod: str
    presented: bytes | None  # DER of the leaf the server sidecar presents
    presented_error: str | None
    files: dict[str, tuple[bytes, int]]  # files mode: name -> (content, mode)


@dataclass(frozen=True)
class PeerProbe:
    """Connections from a peer's pod to the workload's pod IP."""

    peer: str  # the workload whose pod tried
    pod_ip: str
    results: dict[int, str]  # port -> "open" or the error


def _conn_and_pod(clusters: dict[str, ClusterApi], t: Topology, w: Workload
                  ) -> tuple[ClusterApi, str, str]:
    k = w.kubernetes
    if k is None:
        raise KubernetesTargetError(f"workload {w.name!r} has no kubernetes: no pod to ask")
    conn = clusters[workload_cluster(t, w)]
    return conn, k.namespace, running_pod(conn, k.namespace, selector_labels(w.name, "workload"))


def _python(conn: ClusterApi, ns: str, pod: str, container: str, program: str,
            args: list[str]) -> dict[str, object]:
    res = exec_in_pod(conn, ns, pod, container, ["python3", "-c", program, *args], timeout=30)
    if res.returncode != 0:
        raise KubernetesTargetError(f"python in {ns}/{pod} ({container}) exited "
                                    f"{res.returncode}: {res.stderr.strip()[-300:]}")
    loaded: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    return loaded


def sidecar_facts(clusters: dict[str, ClusterApi], t: Topology, name: str) -> SidecarFacts:
    """The presented certificate and the files, read in ``name``'s app container."""
    w = t.workload(name)
    conn, ns, pod = _conn_and_pod(clusters, t, w)
    server = next((s for s in w.sidecars if s.mode == "server"), None)
    port = w.kubernetes.service_port if server and w.kubernetes else None
    files_mode = any(s.mode == "files" for s in w.sidecars)
    raw = _python(conn, ns, pod, w.name, _FACTS,
                  [str(port or 0), SVID_DIR if files_mode else ""])  # fmt: skip
    presented = raw.get("presented")
    files = raw.get("files") or {}
    assert isinstance(files, dict)
    return SidecarFacts(
        pod=pod,
        presented=base64.b64decode(presented) if isinstance(presented, str) else None,
        presented_error=str(raw["presented_error"]) if raw.get("presented_error") else None,
        files={n: (base64.b64decode(v[0]), int(v[1])) for n, v in files.items()},
    )


def plain_port_from_peer(clusters: dict[str, ClusterApi], t: Topology, name: str,
                         app_port: int) -> PeerProbe:
    """From the pod of a workload that calls ``name`` (the network admits it to the
    sidecar's port), connect to ``name``'s pod IP on the sidecar's port and the app's."""
    w = t.workload(name)
    conn, ns, pod = _conn_and_pod(clusters, t, w)
    pod_ip = conn.core.read_namespaced_pod(pod, ns).status.pod_ip
    cluster = workload_cluster(t, w)
    peers = [c for c in workload_callers(t, w) if c.kubernetes is not None
             and (c.run is not None or c.kubernetes.command)
             and workload_cluster(t, c) == cluster]  # fmt: skip
    if not peers:
        raise KubernetesTargetError(f"no workload in {cluster} calls {name}: no peer pod to "
                                    "try its plain port from")
    peer = peers[0]
    pconn, pns, ppod = _conn_and_pod(clusters, t, peer)
    assert w.kubernetes is not None and w.kubernetes.service_port is not None
    ports = [w.kubernetes.service_port, app_port]
    raw = _python(pconn, pns, ppod, peer.name, _CONNECT, [str(pod_ip), *map(str, ports)])
    return PeerProbe(peer.name, str(pod_ip), {int(p): str(v) for p, v in raw.items()})
