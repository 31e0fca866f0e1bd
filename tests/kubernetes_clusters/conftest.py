"""Kubernetes tests: two real clusters, by default ours on this machine (tests/kube_harness).

They run when SPIRE_FABRIC_KUBE_TESTS=1, otherwise they are skipped with that reason. The
clusters reach the tests through `spire_fabric.testing`'s `kube_clusters` fixture, the one a
user points at their own clusters with SPIRE_FABRIC_KUBECONFIG; without that variable, this
conftest provides the kubeconfig by bringing our test clusters up (root), and adds what the
harness knows (node plan, directories) to each cluster's description. Clusters that cannot
come up fail the tests. (The folder is not named `kubernetes`: that would shadow the client
package.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from kubernetes_clusters._kube import DOWNSTREAM, KUBE_TESTS_ENV, SMOKE_NS, UPSTREAM, Kube
from spire_fabric.testing.kubeconfig import KUBECONFIG_ENV

REHEARSAL_ENV = "SPIRE_FABRIC_UPGRADE_REHEARSAL"
# issue 23's rolling-upgrade rehearsal runs on demand only (its docstring says why and how):
# without the variable it is not collected, so the test command neither runs nor skips it
collect_ignore = [] if os.environ.get(REHEARSAL_ENV) == "1" else ["test_upgrade_rehearsal.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.kubernetes)
            if os.environ.get(KUBE_TESTS_ENV) != "1":
                item.add_marker(pytest.mark.skip(
                    reason=f"Kubernetes test clusters: set {KUBE_TESTS_ENV}=1 (needs root)"))
            elif os.geteuid() != 0 and not os.environ.get(KUBECONFIG_ENV):
                item.add_marker(pytest.mark.skip(reason="Kubernetes test clusters need root"))


@pytest.fixture(scope="session")
def harness_status() -> Iterator[dict[str, Any] | None]:
    """Our test clusters, up (None when SPIRE_FABRIC_KUBECONFIG names other clusters).

    Reuses clusters that are already up (left by `scripts/kube-clusters up`) and leaves them
    running; clusters started here are torn down at the end of the session, and anything
    of ours left behind fails it.
    """
    if os.environ.get(KUBECONFIG_ENV):
        yield None
        return
    import kube_harness as harness

    from spire_fabric._run import CommandError

    started = False
    try:
        if not harness.status()["up"]:
            harness.up()
            started = True
        yield harness.status()
    except (harness.KubeClusterError, harness.KubeBuildError, CommandError) as err:
        pytest.fail(f"the Kubernetes test clusters could not be brought up:\n{err}")
    finally:
        if started:
            harness.down()
            left = harness.leftovers()
            if left:
                pytest.fail("the Kubernetes test clusters' teardown left: " + "; ".join(left))


@pytest.fixture(scope="session")
def spire_fabric_kubeconfig(harness_status: dict[str, Any] | None) -> str:
    """The plugin's fixture, overridden: the user's kubeconfig, else our clusters'."""
    if harness_status is None:
        return os.environ[KUBECONFIG_ENV]
    return str(harness_status["kubeconfig"])


@pytest.fixture(scope="session")
def kubes(kube_clusters: dict[str, Any], harness_status: dict[str, Any] | None
          ) -> Iterator[dict[str, Kube]]:
    # On our clusters, the harness's plan (node names, addresses, directories) is what the
    # tests compare the API's answers with, so it takes precedence over what the API says.
    planned = harness_status["clusters"] if harness_status else {}
    clusters = {name: Kube(name, kube_clusters["kubeconfig"],
                           {**info, **planned.get(name, {})}, context=info["context"])
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
