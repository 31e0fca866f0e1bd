"""Helpers of the Kubernetes tests: typed clients per cluster and run-a-pod-to-completion."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from spire_fabric._wait import wait_until

KUBE_TESTS_ENV = "SPIRE_FABRIC_KUBE_TESTS"
UPSTREAM = "upstream-spire-cluster"
DOWNSTREAM = "downstream-spire-cluster"
SMOKE_NS = "sfk-smoke"
PYTHON_IMAGE_ENV = "SPIRE_FABRIC_KUBE_PYTHON_IMAGE"


class Kube:
    """Typed API clients for one cluster, plus small helpers the smoke tests share."""

    def __init__(self, name: str, kubeconfig: str, info: dict[str, Any],
                 context: str | None = None) -> None:
        """`name` is the design's cluster name; `context` the kubeconfig's (default: same)."""
        from kubernetes import client, config

        self.name = name
        self.info = info
        self.node_ip: str = info["node_ip"]
        # [{"name", "ip", "pod_cidr", ...}], the first node first
        self.nodes: list[dict[str, Any]] = info["nodes"]
        self.api = config.new_client_from_config(kubeconfig, context=context or name)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.auth = client.AuthenticationV1Api(self.api)

    def fresh_namespace(self, ns: str, labels: dict[str, str] | None = None) -> None:
        """`ns`, new and empty: one left by an earlier session is deleted first."""
        from kubernetes.client.rest import ApiException

        with contextlib.suppress(ApiException):
            self.core.delete_namespace(ns, grace_period_seconds=0)

        def gone() -> bool:
            try:
                self.core.read_namespace(ns)
            except ApiException as exc:
                return exc.status == 404
            return False

        self.wait(f"namespace {ns} deleted", gone, timeout=120)
        self.ensure_namespace(ns, labels)

    def ensure_namespace(self, ns: str, labels: dict[str, str] | None = None) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            self.core.create_namespace(client.V1Namespace(
                metadata=client.V1ObjectMeta(name=ns, labels=labels)))
        except ApiException as exc:
            if exc.status != 409:
                raise

    def wait(self, what: str, probe: Callable[[], bool], timeout: float = 90) -> None:
        """`wait_until` failing the test with the cluster's recent events (API hiccups
        while objects appear count as "not yet")."""

        def failure(message: str) -> AssertionError:
            events = self.core.list_event_for_all_namespaces(_request_timeout=5).items[-15:]
            lines = "\n".join(f"  {e.involved_object.kind}/{e.involved_object.name}: "
                              f"{e.reason}: {e.message}" for e in events)
            return AssertionError(f"{self.name}: {message}\nrecent events:\n{lines}")

        wait_until(probe, timeout, what, interval=0.5, error=failure)

    def run_python(self, ns: str, name: str, script: str, **kw: Any) -> tuple[str, str]:
        """Run `python3 -c script` in a pod to completion; return (phase, logs)."""
        return self.run(ns, name, PYTHON_IMAGE, ["python3", "-u", "-c", script], **kw)

    def run(self, ns: str, name: str, image: str, command: list[str], *,
            timeout: float = 90, spec_extra: dict[str, Any] | None = None,
            container_extra: dict[str, Any] | None = None,
            node: str | None = None,
            labels: dict[str, str] | None = None) -> tuple[str, str]:
        """Run `command` in a pod of `image` to completion (on `node` if given, bypassing
        the scheduler); return (phase, logs)."""
        from kubernetes.client.rest import ApiException

        with contextlib.suppress(ApiException):  # a pod of that name from an earlier run
            self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            self.wait(f"old pod {name} gone", lambda: _gone(self.core, name, ns))
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, **({"labels": labels} if labels else {})},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": image,
                                     "imagePullPolicy": "Never", "command": command,
                                     **(container_extra or {})}],
                     **({"nodeName": node} if node else {}),
                     **(spec_extra or {})},
        }
        self.core.create_namespaced_pod(ns, body)
        phase = ""

        def done() -> bool:
            nonlocal phase
            phase = self.core.read_namespaced_pod(name, ns).status.phase
            return phase in ("Succeeded", "Failed")

        self.wait(f"pod {ns}/{name} finished", done, timeout)
        logs = self.core.read_namespaced_pod_log(name, ns)
        return phase, logs


def _gone(core: Any, name: str, ns: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        core.read_namespaced_pod(name, ns)
    except ApiException as exc:
        return exc.status == 404
    return False


def _python_image() -> str:
    """Our clusters' python image; on other clusters, SPIRE_FABRIC_KUBE_PYTHON_IMAGE (any
    image with python3 that the nodes already have: the pods never pull)."""
    if os.environ.get(PYTHON_IMAGE_ENV):
        return os.environ[PYTHON_IMAGE_ENV]
    from kube_harness._images import image_set

    return image_set()["python"].ref


PYTHON_IMAGE = _python_image()


