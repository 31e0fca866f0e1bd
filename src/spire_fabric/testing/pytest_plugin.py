"""Pytest fixtures that start real SPIRE servers and agents and clean up after themselves.

`spire_server_factory` / `spire_agent_factory` start as many as a test needs (two trust
domains in one test is the common case); teardown stops exactly the processes they started,
and a failing test gets each process's log tail in its report.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spire_fabric.runtime.binaries import SpireBinaries, SpireBinariesError, ensure_spire
from spire_fabric.testing._processes import SpireAgentProcess, SpireServerProcess
from spire_fabric.testing.databases import (
    DatabaseBinariesError,
    MariaDbServer,
    PostgresServer,
    stop_and_remove,
)
from spire_fabric.testing.kubeconfig import KUBECONFIG_ENV, KubeconfigError, two_clusters

_STARTED = pytest.StashKey[list[Any]]()

ServerFactory = Callable[..., SpireServerProcess]
AgentFactory = Callable[..., SpireAgentProcess]


@pytest.fixture(scope="session")
def spire_binaries() -> SpireBinaries:
    """The pinned SPIRE release; a test that needs it fails (not skips) if it can't be had."""
    try:
        return ensure_spire()
    except SpireBinariesError as err:
        pytest.fail(f"real SPIRE is required for this test and could not be provided:\n{err}")


@pytest.fixture
def spire_server_factory(
    request: pytest.FixtureRequest, spire_binaries: SpireBinaries
) -> Iterator[ServerFactory]:
    started: list[SpireServerProcess] = []

    def make(trust_domain: str = "example.org", **kwargs: Any) -> SpireServerProcess:
        server = SpireServerProcess(spire_binaries, trust_domain, **kwargs)
        started.append(server)
        request.node.stash.setdefault(_STARTED, []).append(server)
        return server.start()

    yield make
    _stop_all(started)


@pytest.fixture
def spire_agent_factory(
    request: pytest.FixtureRequest, spire_binaries: SpireBinaries
) -> Iterator[AgentFactory]:
    started: list[SpireAgentProcess] = []

    def make(server: SpireServerProcess, **kwargs: Any) -> SpireAgentProcess:
        agent = SpireAgentProcess(spire_binaries, server, **kwargs)
        started.append(agent)
        request.node.stash.setdefault(_STARTED, []).append(agent)
        return agent.start()

    yield make
    _stop_all(started)


@pytest.fixture
def spire_server(spire_server_factory: ServerFactory) -> SpireServerProcess:
    """One server for trust domain example.org."""
    return spire_server_factory("example.org")


@pytest.fixture
def spire_agent(
    spire_agent_factory: AgentFactory, spire_server: SpireServerProcess
) -> SpireAgentProcess:
    """One agent attested to `spire_server` with a join token."""
    return spire_agent_factory(spire_server)


def _stop_all(processes: list[Any]) -> None:
    # agents before servers, newest first, so nothing reconnects to a stopped server
    errors = []
    for process in reversed(processes):
        try:
            process.stop()
        except Exception as err:  # keep stopping the rest
            errors.append(f"{process.name}: {err}")
    for process in processes:
        if not process.running:
            shutil.rmtree(process.workdir, ignore_errors=True)
    if errors:
        raise RuntimeError("could not stop SPIRE processes: " + "; ".join(errors))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for process in item.stash.get(_STARTED, []):
            report.sections.append((f"{process.name} log ({process.log_path})", process.log_tail()))
    return report


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDbServer]:
    """A throwaway MariaDB on 127.0.0.1 for the whole session (one per xdist worker).

    Tests isolate themselves by creating their own database and user. Missing binaries fail
    the test (never skip): the SQL datastore claims must be proven against a real server.
    """
    try:
        server = MariaDbServer()
    except DatabaseBinariesError as err:
        pytest.fail(f"a real MariaDB is required for this test: {err}")
    try:
        yield server.start()
    finally:
        stop_and_remove(server)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on 127.0.0.1 for the whole session (one per xdist worker).

    Tests isolate themselves by creating their own database and user. Missing binaries fail
    the test (never skip): the SQL datastore claims must be proven against a real server.
    """
    try:
        server = PostgresServer()
    except DatabaseBinariesError as err:
        pytest.fail(f"a real PostgreSQL is required for this test: {err}")
    try:
        yield server.start()
    finally:
        stop_and_remove(server)


@pytest.fixture(scope="session")
def spire_fabric_kubeconfig() -> str:
    """Path of a kubeconfig with a context for each of the two clusters.

    From `SPIRE_FABRIC_KUBECONFIG` (the contexts: `SPIRE_FABRIC_UPSTREAM_CONTEXT`,
    `SPIRE_FABRIC_DOWNSTREAM_CONTEXT`, defaulting to `upstream-spire-cluster` and
    `downstream-spire-cluster`). A conftest may override this fixture to provide clusters
    another way (spire_fabric's own tests bring up their test clusters here).
    """
    path = os.environ.get(KUBECONFIG_ENV, "")
    if not path:
        pytest.fail(f"no Kubernetes clusters to test against: set {KUBECONFIG_ENV} to a "
                    "kubeconfig with a context for each of the two clusters (see "
                    "docs/kubernetes-test-clusters.md)")
    return path


@pytest.fixture(scope="session")
def kube_clusters(spire_fabric_kubeconfig: str) -> dict[str, Any]:
    """The two clusters of `spire_fabric_kubeconfig`, checked to answer, described.

    `{"kubeconfig": path, "clusters": {"upstream-spire-cluster": {"context", "api",
    "node_ip", "nodes": [{"name", "ip", "pod_cidr"}, ...]}, "downstream-spire-cluster":
    ...}}`; any kubeconfig works (kind, k3d, a real cluster). A missing context or a cluster
    that does not answer fails the test, naming which.
    """
    try:
        return two_clusters(spire_fabric_kubeconfig)
    except KubeconfigError as err:
        pytest.fail(f"the Kubernetes clusters are not usable: {err}")
