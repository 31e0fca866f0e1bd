"""Kubernetes tests: two real clusters on this machine (spire_fabric.testing.kubernetes).

They run when SPIRE_FABRIC_KUBE_TESTS=1 (and as root), otherwise they are skipped with that
reason; a cluster that cannot come up then fails them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

KUBE_TESTS_ENV = "SPIRE_FABRIC_KUBE_TESTS"
UPSTREAM = "upstream-spire-cluster"
DOWNSTREAM = "downstream-spire-cluster"
SMOKE_NS = "sfk-smoke"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.kubernetes)
            if os.environ.get(KUBE_TESTS_ENV) != "1":
                item.add_marker(pytest.mark.skip(
                    reason=f"Kubernetes test clusters: set {KUBE_TESTS_ENV}=1 (needs root)"))
            elif os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="Kubernetes test clusters need root"))


class Kube:
    """Typed API clients for one cluster, plus small helpers the smoke tests share."""

    def __init__(self, name: str, kubeconfig: str, info: dict[str, Any]) -> None:
        from kubernetes import client, config

        self.name = name
        self.info = info
        self.node_ip: str = info["node_ip"]
        self.api = config.new_client_from_config(kubeconfig, context=name)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.auth = client.AuthenticationV1Api(self.api)

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
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if probe():
                    return
            except Exception as exc:  # API hiccups while objects appear
                last = exc
            time.sleep(0.5)
        events = self.core.list_event_for_all_namespaces(_request_timeout=5).items[-15:]
        lines = "\n".join(f"  {e.involved_object.kind}/{e.involved_object.name}: "
                          f"{e.reason}: {e.message}" for e in events)
        raise AssertionError(f"{self.name}: {what} not true after {timeout} s "
                             f"(last error: {last})\nrecent events:\n{lines}")

    def run_python(self, ns: str, name: str, script: str, **kw: Any) -> tuple[str, str]:
        """Run `python3 -c script` in a pod to completion; return (phase, logs)."""
        return self.run(ns, name, PYTHON_IMAGE, ["python3", "-u", "-c", script], **kw)

    def run(self, ns: str, name: str, image: str, command: list[str], *,
            timeout: float = 90, spec_extra: dict[str, Any] | None = None,
            container_extra: dict[str, Any] | None = None) -> tuple[str, str]:
        """Run `command` in a pod of `image` to completion; return (phase, logs)."""
        from kubernetes.client.rest import ApiException

        with contextlib.suppress(ApiException):  # a pod of that name from an earlier run
            self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            self.wait(f"old pod {name} gone", lambda: _gone(self.core, name, ns))
        body = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": image,
                                     "imagePullPolicy": "Never", "command": command,
                                     **(container_extra or {})}],
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
    from spire_fabric.testing.kubernetes._images import image_set

    return image_set()["python"].ref


PYTHON_IMAGE = _python_image()


@pytest.fixture(scope="session")
def kubes(kube_clusters: dict[str, Any]) -> Iterator[dict[str, Kube]]:
    clusters = {name: Kube(name, kube_clusters["kubeconfig"], info)
                for name, info in kube_clusters["clusters"].items()}
    for k in clusters.values():
        k.ensure_namespace(SMOKE_NS)
        # Pods are refused until the service-account controller made the default account.
        k.wait("default service account", lambda k=k: bool(
            k.core.read_namespaced_service_account("default", SMOKE_NS)))
    yield clusters
    for k in clusters.values():
        with contextlib.suppress(Exception):  # tearing the clusters down removes it anyway
            k.core.delete_namespace(SMOKE_NS, grace_period_seconds=0)


@pytest.fixture(scope="session", params=[UPSTREAM, DOWNSTREAM])
def kube(request: pytest.FixtureRequest, kubes: dict[str, Kube]) -> Kube:
    return kubes[request.param]
