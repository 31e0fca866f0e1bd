"""Pytest fixtures that start real SPIRE servers and agents and clean up after themselves.

`spire_server_factory` / `spire_agent_factory` start as many as a test needs (two trust
domains in one test is the common case); teardown stops exactly the processes they started,
and a failing test gets each process's log tail in its report.
"""

from __future__ import annotations

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
def kube_clusters() -> Iterator[dict[str, Any]]:
    """The two test clusters (`upstream-spire-cluster`, `downstream-spire-cluster`), up.

    Reuses clusters that are already up (left by `scripts/kube-clusters up`) and leaves them
    running; clusters this fixture started are torn down at the end of the session. Yields
    the harness status (`kubeconfig`, per-cluster API URL, first node IP and `nodes`: name,
    IP and pod subnet of each; upstream has one node, downstream three). Needs root and the
    cached builds (`scripts/kube-clusters build`); a failure to come up fails the test.
    """
    from spire_fabric.testing import kubernetes as kube

    started = False
    try:
        if not kube.status()["up"]:
            kube.up()
            started = True
        yield kube.status()
    except (kube.KubeClusterError, kube.KubeBuildError) as err:
        pytest.fail(f"the Kubernetes test clusters could not be brought up:\n{err}")
    finally:
        if started:
            kube.down()
            left = kube.leftovers()
            if left:
                pytest.fail("the Kubernetes test clusters' teardown left: " + "; ".join(left))
