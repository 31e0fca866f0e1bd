"""Everything the parts of a local deployment share: its state, topology, paths, processes.

Why one object: state, process plan, SPIRE bootstrap, waits and status each need the same
handful of facts (where the state lives, the topology as this machine runs it, the socket of
each agent). Passing one context keeps each of those modules a set of plain functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spire_fabric.render import RenderPaths
from spire_fabric.runtime.binaries import SpireBinaries, ensure_spire
from spire_fabric.runtime.local._supervisor_client import SupervisorClient
from spire_fabric.runtime.local.localize import localize
from spire_fabric.runtime.local.state import DeploymentRecord, StateDir
from spire_fabric.topology import Agent, Topology

if TYPE_CHECKING:
    from spire_fabric.server import SpireServerClient

__all__ = ["LocalContext", "agent_component", "server_component", "workload_component"]


def server_component(name: str) -> str:
    return f"server:{name}"


def agent_component(name: str) -> str:
    return f"agent:{name}"


def workload_component(name: str) -> str:
    return f"workload:{name}"


@dataclass
class LocalContext:
    state: StateDir
    record: DeploymentRecord
    topology: Topology  # as the user wrote it
    binaries_: SpireBinaries | None = None
    local: Topology = field(init=False)  # as this machine runs it
    paths: RenderPaths = field(init=False)
    supervisor: SupervisorClient = field(init=False)

    def __post_init__(self) -> None:
        self.local = localize(self.topology, self.record.settings)
        self.paths = RenderPaths.local(str(self.state.path))
        self.supervisor = SupervisorClient(self.state.path)

    @property
    def binaries(self) -> SpireBinaries:
        if self.binaries_ is None:
            self.binaries_ = ensure_spire()
        return self.binaries_

    def server_client(self, name: str) -> SpireServerClient:
        from spire_fabric.server import SpireServerClient  # gRPC: only when a server is asked

        return SpireServerClient(f"unix://{self.paths.server_socket(name)}")

    def agent(self, name: str) -> Agent:
        return self.local.agent(name)

    def agent_socket(self, name: str) -> str:
        """The one place that decides an agent's Workload API socket (its `socket_path`
        if the topology sets one, else a path under the state directory)."""
        return self.paths.agent_socket(self.local.agent(name))

    def agent_endpoint(self, name: str) -> str:
        return f"unix://{self.agent_socket(name)}"

    def log_path(self, component: str) -> Path:
        return self.state.logs_dir / f"{component.split(':', 1)[-1]}.log"
