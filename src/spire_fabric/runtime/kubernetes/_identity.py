"""A workload's identity, fetched where only that workload can fetch it: inside a pod of
its service account, next to its agent. The agent's ``k8s`` attestor decides who the
caller is, so this proves registration and attestation, not just that an entry exists.

A workload that runs gets an exec in its own pod; one that is only registered (its pods
are the user's) gets a short-lived probe pod of its service account, deleted afterwards.
The pod runs the SDK's ``python -m spire_fabric.workload.relay``; its answers travel back
as the raw protobuf messages, decoded by the same code as every other Workload API answer
in this library. The probe pod is the renderer's (``identity_probe_pod``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid
from spire_fabric.proto.workload import workload_pb2
from spire_fabric.render.kubernetes import identity_probe_pod, selector_labels, workload_cluster
from spire_fabric.runtime.deployment import WorkloadViews
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, api_error_message
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._pods import exec_in_pod, running_pod
from spire_fabric.topology import Topology, Workload
from spire_fabric.workload import X509Context
from spire_fabric.workload._convert import (
    jwt_bundles_from_response,
    jwt_svids_from_response,
    x509_context_from_response,
)

# How long one relay keeps asking while the agent has no identity for its pod yet: a probe
# pod's entry is made by the controller manager after the pod appears, then reaches the
# agent through the server's entry cache and the agent's sync (5 s each, SPIRE's defaults).
# With the relay's own fetch timeout (10 s) it stays within the exec's (30 s), so a relay
# that gets nothing still answers with the agent's reason.
RELAY_WAIT_S = 15


def needs_probe_pod(w: Workload) -> bool:
    """Whether ``w`` is only registered (its pods are the user's): a probe pod reads it."""
    assert w.kubernetes is not None
    return w.run is None and not w.kubernetes.command


def start_probe_pod(conn: ClusterApi, topology: Topology, w: Workload) -> str:
    """Create a probe pod for ``w`` without waiting for it; its name.

    Why ahead: the probe pod's entry is made by the controller manager once the pod
    exists and reaches the agent through the server's entry cache and the agent's sync (5
    s each), the slowest read of `verify`. `up` starts it with the workloads, so that wait
    passes while the workloads come up."""
    assert w.kubernetes is not None
    name = f"{w.name}-probe-{uuid.uuid4().hex[:6]}"
    body = identity_probe_pod(topology, w, name)
    try:
        conn.core.create_namespaced_pod(w.kubernetes.namespace, body)
    except ApiException as err:
        raise KubernetesTargetError(
            f"cannot create probe pod for {w.name} in {w.kubernetes.namespace} of "
            f"{conn.where()}: {api_error_message(err)}"
        ) from err
    return name


def delete_probe_pod(conn: ClusterApi, w: Workload, name: str) -> None:
    assert w.kubernetes is not None
    with contextlib.suppress(ApiException):
        conn.core.delete_namespaced_pod(name, w.kubernetes.namespace, grace_period_seconds=0)


class WorkloadIdentity:
    """What the Workload API gives one workload in its cluster.

    ``probe_pod``: a probe pod already started for it (:func:`start_probe_pod`), used
    instead of a new one and deleted after the read like one."""

    def __init__(
        self,
        conn: ClusterApi,
        topology: Topology,
        workload: Workload,
        probe_pod: str | None = None,
    ) -> None:
        self.conn, self.topology, self.workload = conn, topology, workload
        self.probe_pod = probe_pod

    def fetch(self, audiences: Sequence[str] = (), timeout: float = 45) -> dict[str, Any]:
        """The raw answers with a JWT-SVID for each audience (``jwt`` by audience), read by
        one relay in one pod: the workload's own, or a probe pod. The relay itself waits
        while the agent has no identity for the pod yet (a probe pod that just started),
        so a slow attestation costs no further exec; an exec that still fails (the entry
        not synced yet) is tried again until ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._pod() as (ns, pod, container):
            return self._relay(ns, pod, container, audiences, deadline)

    def _relay(
        self, ns: str, pod: str, container: str, audiences: Sequence[str], deadline: float
    ) -> dict[str, Any]:
        argv = ["python3", "-m", "spire_fabric.workload.relay", "--wait", str(RELAY_WAIT_S)]
        for audience in dict.fromkeys(audiences):
            argv += [audience, self.workload.spiffe_id]
        while True:
            result = exec_in_pod(self.conn, ns, pod, container, argv, timeout=30)
            if result.returncode == 0:
                return dict(json.loads(result.stdout))
            lines = (result.stderr or result.stdout).strip().splitlines()
            last = lines[-1] if lines else ""
            if time.monotonic() > deadline:
                raise KubernetesTargetError(
                    f"{self.workload.name} got no identity from its agent in pod {ns}/{pod} "
                    f"of {self.conn.where()}: {last[:300]}"
                )
            time.sleep(2)

    def views(self, audiences: Sequence[str] = ()) -> WorkloadViews:
        """Every view from one relay: the X.509 context, the JWT bundles and a JWT-SVID
        for each audience."""
        raw = self.fetch(audiences)
        return WorkloadViews(
            self._x509(raw),
            self._jwt_bundles(raw),
            {a: self._jwt_svid(raw["jwt"][a], a) for a in audiences},
        )

    def x509_context(self) -> X509Context:
        return self._x509(self.fetch())

    def jwt(self, audience: str) -> tuple[JwtSvid, BundleSet[JwtBundle]]:
        raw = self.fetch([audience])
        return self._jwt_svid(raw["jwt"][audience], audience), self._jwt_bundles(raw)

    def jwt_bundles(self) -> BundleSet[JwtBundle]:
        return self._jwt_bundles(self.fetch())

    def _x509(self, raw: dict[str, Any]) -> X509Context:
        msg = workload_pb2.X509SVIDResponse.FromString(base64.b64decode(raw["x509"]))
        return x509_context_from_response(msg, self._endpoint())

    def _jwt_svid(self, encoded: str, audience: str) -> JwtSvid:
        return jwt_svids_from_response(
            workload_pb2.JWTSVIDResponse.FromString(base64.b64decode(encoded)),
            (audience,),
            self._endpoint(),
        )[0]

    def _jwt_bundles(self, raw: dict[str, Any]) -> BundleSet[JwtBundle]:
        bundles = jwt_bundles_from_response(
            workload_pb2.JWTBundlesResponse.FromString(base64.b64decode(raw["jwt_bundles"])),
            self._endpoint(),
        )
        return BundleSet(bundles.values())

    def _endpoint(self) -> str:
        return f"{self.conn.cluster}/{self.workload.name}"

    @contextlib.contextmanager
    def _pod(self) -> Iterator[tuple[str, str, str]]:
        w = self.workload
        assert w.kubernetes is not None
        ns = w.kubernetes.namespace
        if not needs_probe_pod(w):
            pod = running_pod(self.conn, ns, selector_labels(w.name, "workload"))
            yield ns, pod, w.name
            return
        name, self.probe_pod = self.probe_pod, None  # a started pod serves one read
        if name is None:
            name = start_probe_pod(self.conn, self.topology, w)
        try:
            _wait_running(self.conn, ns, name)
            yield ns, name, "probe"
        finally:
            delete_probe_pod(self.conn, w, name)


def _wait_running(conn: ClusterApi, ns: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = conn.core.read_namespaced_pod(name, ns)
        if pod.status.phase == "Running":
            return
        for cs in pod.status.container_statuses or []:
            if (
                cs.state
                and cs.state.waiting
                and cs.state.waiting.reason
                not in (
                    None,
                    "ContainerCreating",
                )
            ):
                raise KubernetesTargetError(
                    f"probe pod {ns}/{name}: {cs.state.waiting.reason}: {cs.state.waiting.message}"
                )
        time.sleep(0.5)
    raise KubernetesTargetError(f"probe pod {ns}/{name} not running after {timeout:.0f}s")


def cluster_of(topology: Topology, w: Workload) -> str:
    return workload_cluster(topology, w)
