"""Kubernetes tests: two real clusters on this machine (spire_fabric.testing.kubernetes).

They run when SPIRE_FABRIC_KUBE_TESTS=1 (and as root), otherwise they are skipped with that
reason; clusters that cannot come up then fail them. (The folder is not named `kubernetes`:
that would shadow the client package.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from kubernetes_clusters._kube import DOWNSTREAM, KUBE_TESTS_ENV, SMOKE_NS, UPSTREAM, Kube


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.kubernetes)
            if os.environ.get(KUBE_TESTS_ENV) != "1":
                item.add_marker(pytest.mark.skip(
                    reason=f"Kubernetes test clusters: set {KUBE_TESTS_ENV}=1 (needs root)"))
            elif os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="Kubernetes test clusters need root"))


@pytest.fixture(scope="session")
def kubes(kube_clusters: dict[str, Any]) -> Iterator[dict[str, Kube]]:
    clusters = {name: Kube(name, kube_clusters["kubeconfig"], info)
                for name, info in kube_clusters["clusters"].items()}
    for k in clusters.values():
        k.fresh_namespace(SMOKE_NS)
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
