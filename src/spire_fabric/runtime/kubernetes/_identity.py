"""A workload's identity, fetched where only that workload can fetch it: inside a pod of
its service account, next to its agent. The agent's ``k8s`` attestor decides who the
caller is, so this proves registration and attestation, not just that an entry exists.

A workload that runs gets an exec in its own pod; one that is only registered (its pods
are the user's) gets a short-lived probe pod of its service account, deleted afterwards.
The Workload API answers travel back as the raw protobuf messages, decoded by the same
code as every other Workload API answer in this library.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from spire_fabric.identity import BundleSet, JwtBundle
from spire_fabric.proto.workload import workload_pb2
from spire_fabric.render import RenderPaths
from spire_fabric.render.kubernetes._common import (
    LABEL_WORKLOAD,
    WORKLOAD_SOCKET_DIR,
    WORKLOAD_UID,
    agent_node_selector,
    restricted_container,
    restricted_pod,
    selector_labels,
    workload_socket_volume,
)
from spire_fabric.render.kubernetes._workloads import workload_cluster
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

PROBE_LABEL = "spire-fabric.io/probe"
_FETCH = r"""
import base64, json, os, sys, grpc
from spire_fabric.proto.workload import workload_pb2 as pb, workload_pb2_grpc as rpc
stub = rpc.SpiffeWorkloadAPIStub(grpc.insecure_channel(os.environ["SPIFFE_ENDPOINT_SOCKET"]))
md = [("workload.spiffe.io", "true")]
enc = lambda m: base64.b64encode(m.SerializeToString()).decode()
out = {"x509": enc(next(stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=md, timeout=10))),
       "jwt_bundles": enc(next(stub.FetchJWTBundles(pb.JWTBundlesRequest(), metadata=md,
                                                    timeout=10)))}
if len(sys.argv) > 1:
    out["jwt"] = enc(stub.FetchJWTSVID(pb.JWTSVIDRequest(audience=[sys.argv[1]],
                     spiffe_id=sys.argv[2]), metadata=md, timeout=10))
print(json.dumps(out))
"""


class WorkloadIdentity:
    """What the Workload API gives one workload in its cluster."""

    def __init__(self, conn: ClusterApi, topology: Topology, workload: Workload) -> None:
        self.conn, self.topology, self.workload = conn, topology, workload

    def fetch(self, audience: str | None = None, timeout: float = 45) -> dict[str, Any]:
        """The raw answers; retried while the entry is being created and synced."""
        deadline = time.monotonic() + timeout
        with self._pod() as (ns, pod, container):
            argv = ["python3", "-c", _FETCH]
            if audience:
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

    def x509_context(self) -> X509Context:
        raw = self.fetch()
        msg = workload_pb2.X509SVIDResponse.FromString(base64.b64decode(raw["x509"]))
        return x509_context_from_response(msg, self._endpoint())

    def jwt(self, audience: str) -> tuple[Any, BundleSet[JwtBundle]]:
        raw = self.fetch(audience)
        svids = jwt_svids_from_response(
            workload_pb2.JWTSVIDResponse.FromString(base64.b64decode(raw["jwt"])),
            (audience,),
            self._endpoint(),
        )
        bundles = jwt_bundles_from_response(
            workload_pb2.JWTBundlesResponse.FromString(base64.b64decode(raw["jwt_bundles"])),
            self._endpoint(),
        )
        return svids[0], BundleSet(bundles.values())

    def jwt_bundles(self) -> BundleSet[JwtBundle]:
        raw = self.fetch()
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
        if w.run is not None or w.kubernetes.command:
            pod = running_pod(self.conn, ns, selector_labels(w.name, "workload"))
            yield ns, pod, w.name
            return
        name = f"{w.name}-probe-{uuid.uuid4().hex[:6]}"
        self._create_probe(name)
        try:
            _wait_running(self.conn, ns, name)
            yield ns, name, "probe"
        finally:
            with contextlib.suppress(ApiException):
                self.conn.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)

    def _create_probe(self, name: str) -> None:
        w, t = self.workload, self.topology
        assert w.kubernetes is not None
        agent = t.agent(w.agent)
        socket_file = RenderPaths.kubernetes().agent_socket(agent).rsplit("/", 1)[1]
        spec: dict[str, Any] = {
            "serviceAccountName": w.kubernetes.service_account,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 300,  # gone even if we are killed mid-check
            "terminationGracePeriodSeconds": 0,
            "securityContext": restricted_pod(WORKLOAD_UID),
            "containers": [
                {
                    "name": "probe",
                    "image": t.kubernetes.images.workload,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", "import time; time.sleep(290)"],
                    "env": [
                        {
                            "name": "SPIFFE_ENDPOINT_SOCKET",
                            "value": f"unix://{WORKLOAD_SOCKET_DIR}/{socket_file}",
                        }
                    ],
                    "securityContext": restricted_container(),
                    "volumeMounts": [
                        {"name": "spiffe", "mountPath": WORKLOAD_SOCKET_DIR, "readOnly": True}
                    ],
                }
            ],
            "volumes": [workload_socket_volume(t, agent, "spiffe")],
        }
        selector = agent_node_selector(t, agent)
        if selector:
            spec["nodeSelector"] = selector
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {
                    PROBE_LABEL: w.name,
                    LABEL_WORKLOAD: w.name,
                    "app.kubernetes.io/managed-by": "spire-fabric",
                },
            },
            "spec": spec,
        }
        try:
            self.conn.core.create_namespaced_pod(w.kubernetes.namespace, body)
        except ApiException as err:
            raise KubernetesTargetError(
                f"cannot create probe pod for {w.name} in {w.kubernetes.namespace} of "
                f"{self.conn.where()}: {api_error_message(err)}"
            ) from err


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
