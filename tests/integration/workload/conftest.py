"""A real SPIRE server and agent with an entry for this test process (unix:uid selector)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from spire_fabric._wait import wait_until
from spire_fabric.testing._processes import (
    SpireAgentProcess,
    SpireServerProcess,
    current_uid_selector,
)
from spire_fabric.workload import NoIdentityIssuedError, WorkloadApiClient

T = TypeVar("T")

WORKLOAD_ID = "spiffe://example.org/workload"


def poll(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``fn`` until it returns something truthy; fail naming ``what`` after timeout."""
    return wait_until(fn, timeout, what, interval=interval, retry_on=(),
                      error=lambda message: pytest.fail.Exception(message))


def wait_for_identity(agent: SpireAgentProcess, timeout: float = 30.0) -> None:
    """Agents sync entries every ~5 s: wait until ours is served to this process."""

    def issued() -> bool:
        try:
            with WorkloadApiClient(agent.endpoint, timeout=2.0) as client:
                client.fetch_x509_svid()
            return True
        except NoIdentityIssuedError:
            return False

    poll(issued, timeout, f"the agent at {agent.socket_path} to issue an identity", 0.25)


@dataclass
class Workload:
    server: SpireServerProcess
    agent: SpireAgentProcess
    spiffe_id: str

    @property
    def endpoint(self) -> str:
        return self.agent.endpoint


@pytest.fixture
def workload(spire_server: SpireServerProcess, spire_agent: SpireAgentProcess) -> Workload:
    """An agent that has issued an identity to this test process."""
    spire_server.create_entry(
        WORKLOAD_ID, parent_id=spire_agent.spiffe_id, selectors=[current_uid_selector()]
    )
    wait_for_identity(spire_agent)
    return Workload(spire_server, spire_agent, WORKLOAD_ID)
