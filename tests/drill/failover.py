"""Helpers of the failover drills of issue 23 on the Kubernetes test clusters.

Why it exists: a highly available server claims that losing one replica (its pod, its
node, a rolling change) costs no workload request and stops neither X.509 nor JWT
issuance nor new registrations. Cached SVIDs hide an outage of the servers for hours,
so the drills need things that only a *working* server can give during the fault:

- :class:`NewWorkload`: a pod that did not exist before the fault, and an entry created
  during it through the server's API (its Service) that selects that pod alone (by its
  UID). Its SVID needs a replica to take the entry, the agent to sync it, and a server
  to sign a new X.509-SVID; its JWT-SVID for a fresh audience needs a
  server to sign it (an agent caches JWT-SVIDs per audience) and must validate against
  the JWT bundle that a *verifier* (enterprise-api) holds;
- :func:`window_of`: the traffic's counts of one drill, out of one
  :class:`~drill.load.TrafficLoad` that runs through all of them;
- the replica and node helpers the drills break things with.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drill.load import API, FlowCount, LoadReport
from spire_fabric.identity import SpiffeId, TrustDomain, parse_and_validate_jwt_svid
from spire_fabric.proto.workload import workload_pb2
from spire_fabric.render.kubernetes import identity_probe_pod, selector_labels
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.runtime.kubernetes._pods import exec_in_pod
from spire_fabric.workload._convert import (
    jwt_svids_from_response,
    x509_context_from_response,
)

__all__ = [
    "Arrival",
    "NewWorkload",
    "kill_node_containers",
    "node_of",
    "pod_ready",
    "server_pods",
    "wait_for",
    "window_of",
]  # fmt: skip

DRILL_LABEL = "spire-fabric.io/drill"


def pod_ready(pod: Any) -> bool:
    """Running, not being deleted, every container ready (a new pod has no statuses yet:
    that is not ready)."""
    statuses = pod.status.container_statuses or []
    return (pod.metadata.deletion_timestamp is None and pod.status.phase == "Running"
            and bool(statuses) and all(cs.ready for cs in statuses))  # fmt: skip


def server_pods(core: Any, ns: str, server: str) -> list[Any]:
    """The server's replica pods (the StatefulSet's), those being deleted included."""
    selector = ",".join(f"{k}={v}" for k, v in selector_labels(server, "server").items())
    return list(core.list_namespaced_pod(ns, label_selector=selector).items)


def wait_for(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.5) -> float:
    """Seconds until ``probe()`` held (API errors count as "not yet"); AssertionError
    naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if probe():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def node_of(nodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The harness's record of node ``name`` (its directory holds its containerd socket)."""
    return next(n for n in nodes if n["name"] == name)


def kill_node_containers(node: dict[str, Any]) -> int:
    """SIGKILL every container task (pause sandboxes included) through the node's own
    containerd, as a crashed node runtime leaves it; returns how many were killed."""
    ctr = ["ctr", "--address", str(Path(node["dir"]) / "containerd" / "containerd.sock"),
           "-n", "k8s.io"]  # fmt: skip
    ids = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    for cid in ids:
        subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", cid], capture_output=True)
    return len(ids)


def window_of(before: LoadReport, after: LoadReport) -> dict[str, Any]:
    """The load's requests and failures between two reports of one TrafficLoad, per flow
    and in all, with each failure's reason."""
    flows: dict[str, dict[str, Any]] = {}
    for name, now in after.flows.items():
        was = before.flows.get(name, FlowCount(0, 0, {}))
        reasons = {r: n - was.reasons.get(r, 0) for r, n in now.reasons.items()
                   if n - was.reasons.get(r, 0) > 0}  # fmt: skip
        flows[name] = {"requests": now.requests - was.requests,
                       "failures": now.failures - was.failures, "reasons": reasons}  # fmt: skip
    return {"seconds": round(after.seconds - before.seconds, 1),
            "requests": sum(f["requests"] for f in flows.values()),
            "failures": sum(f["failures"] for f in flows.values()), "flows": flows}  # fmt: skip


@dataclass(frozen=True)
class Arrival:
    """What the new workload got, and how long after :meth:`NewWorkload.start`."""

    spiffe_id: str
    x509_seconds: float  # its own X.509-SVID in its Workload API answer
    jwt_seconds: float  # a fresh JWT-SVID of its ID validated by enterprise-api's bundle
    jwt_refused_first: int  # tokens the verifier's bundle could not validate before that
    entry_seconds: float  # until a server took its entry (retried while replicas change)
    refused_why: str = ""  # the verifier's first refusal, if any


class NewWorkload:
    """A pod and the entry that registers it, both made during a drill.

    The pod is the installer's identity probe of ``like`` (its namespace, service account,
    node and agent socket), relabelled so that no ClusterSPIFFEID of the topology selects
    it; the entry's selector is the pod's UID, so no other pod can get its SVID. (A
    ClusterSPIFFEID made during drill (a) got ``entryFailures: 1`` from the controller
    manager for 180 s, cause not yet known; the entry is made through the API instead.)"""

    def __init__(self, d: Deployment, tag: str, *, like: str = "data-processor",
                 server: str = "spire-downstream-server") -> None:  # fmt: skip
        self.d, self.tag, self.server = d, tag, server
        w = d.topology.workload(like)
        assert w.kubernetes is not None
        self.workload, self.ns = w, w.kubernetes.namespace
        self.conn = d.clusters[d.access.workload_cluster(like)]  # type: ignore[attr-defined]
        td = d.topology.server(server).trust_domain
        self.name = f"drill-{tag}-{uuid.uuid4().hex[:5]}"
        self.spiffe_id = f"spiffe://{td}/drill/{self.name}"
        self._td = TrustDomain.parse(str(td))
        self._started = 0.0
        self._entry_id = ""
        self._pod_uid = ""
        self.entry_seconds = 0.0  # from the pod's creation until a server took its entry

    def start(self, entry_timeout: float = 90) -> None:
        """Create the pod, then its entry (:meth:`register`): the entry comes *after* the
        pod, during the fault."""
        self.create_pod()
        self.register(entry_timeout)

    def create_pod(self) -> None:
        body = identity_probe_pod(self.d.topology, self.workload, self.name)
        body["metadata"]["labels"] = {DRILL_LABEL: self.name}
        self._pod_uid = str(self.conn.core.create_namespaced_pod(self.ns, body).metadata.uid)
        self._started = time.monotonic()

    def register(self, timeout: float) -> None:
        """The pod's entry through the server's API (its Service, so any ready replica
        takes it), retried while the call fails (the replica behind it went away) for up
        to ``timeout`` seconds (0: one try); the last error raised after that."""
        from spire_fabric.server import Entry, Selector

        parent = self.d.agent_id(self.workload.agent)
        assert parent is not None, self.workload.agent
        entry = Entry(SpiffeId.parse(self.spiffe_id), parent,
                      (Selector("k8s", f"pod-uid:{self._pod_uid}"),))  # fmt: skip
        tried = time.monotonic()
        while True:
            try:
                with self.d.server(self.server) as api:
                    self._entry_id = api.create_entry(entry).id
                self.entry_seconds = round(time.monotonic() - self._started, 1)
                return
            except Exception:
                if time.monotonic() - tried >= timeout:
                    raise
                time.sleep(1)

    @property
    def registered(self) -> bool:
        return bool(self._entry_id)

    def close(self) -> None:
        from kubernetes.client.exceptions import ApiException

        if self._entry_id:
            with contextlib.suppress(Exception), self.d.server(self.server) as api:
                api.delete_entries([self._entry_id])
        with contextlib.suppress(ApiException):
            self.conn.core.delete_namespaced_pod(self.name, self.ns, grace_period_seconds=0)

    def __enter__(self) -> NewWorkload:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _relay(self, audience: str | None) -> dict[str, Any]:
        """The relay's answers (X.509 alone without an audience); LookupError with what
        the relay said when it got none."""
        argv = ["python3", "-m", "spire_fabric.workload.relay"]
        if audience:
            argv += [audience, self.spiffe_id]
        r = exec_in_pod(self.conn, self.ns, self.name, "probe", argv, timeout=30)
        if r.returncode != 0:
            lines = (r.stderr or r.stdout).strip().splitlines()
            raise LookupError(lines[-1][:300] if lines else f"exit {r.returncode}")
        return dict(json.loads(r.stdout))

    def status(self) -> str:
        """The entry and the pod's phase and node: what a failure message needs."""
        with contextlib.suppress(Exception):
            pod = self.conn.core.read_namespaced_pod(self.name, self.ns)
            return (f"entry {self._entry_id or 'not created'}; pod {pod.status.phase} on "
                    f"{pod.spec.node_name} uid {pod.metadata.uid}")  # fmt: skip
        return "pod unreadable"

    def wait_identity(self, timeout: float = 180) -> Arrival:
        """Wait until the pod's Workload API answers with an X.509-SVID of its new ID, and
        a JWT-SVID of that ID for a fresh audience (so signed now, by a server) validates
        against enterprise-api's JWT bundle. A token the verifier could not validate is
        counted and a new one fetched: its key had not reached the verifier yet."""
        x509_at: float | None = None
        refused, why = 0, ""
        sid = SpiffeId.parse(self.spiffe_id)
        endpoint = f"{self.name}"
        last = "no answer yet"
        deadline = self._started + timeout
        while time.monotonic() < deadline:
            try:
                if x509_at is None:
                    ctx = x509_context_from_response(workload_pb2.X509SVIDResponse.FromString(
                        base64.b64decode(self._relay(None)["x509"])), endpoint)  # fmt: skip
                    if not any(s.spiffe_id == sid for s in ctx.svids):
                        raise LookupError(f"SVIDs {[str(s.spiffe_id) for s in ctx.svids]}")
                    x509_at = time.monotonic() - self._started
                audience = f"drill-audience-{uuid.uuid4().hex[:8]}"
                jwt_msg = workload_pb2.JWTSVIDResponse.FromString(
                    base64.b64decode(self._relay(audience)["jwt"][audience]))  # fmt: skip
                token = jwt_svids_from_response(jwt_msg, (audience,), endpoint)[0].token
                try:
                    parse_and_validate_jwt_svid(token, self.d.jwt_bundles(API), [audience])
                except Exception as err:
                    refused += 1
                    last = f"enterprise-api's bundle refused the JWT-SVID: {err}"
                    why = why or last[:300]
                else:
                    return Arrival(self.spiffe_id, round(x509_at, 1),
                                   round(time.monotonic() - self._started, 1),
                                   refused, self.entry_seconds, why)  # fmt: skip
            except Exception as err:  # pod still starting, entry not there yet, exec hiccup
                last = f"{'JWT' if x509_at else 'X.509'}: {type(err).__name__}: {err}"[:400]
            time.sleep(1)
        raise AssertionError(f"new workload {self.name} got no usable identity within "
                             f"{timeout:g} s: {last}; {self.status()}")  # fmt: skip
