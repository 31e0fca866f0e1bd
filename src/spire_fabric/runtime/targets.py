"""What a target is to the commands: the options it takes, where it keeps its state, how
a deployment opens (:class:`TargetProvider`); the registry that chooses one is
:mod:`spire_fabric.runtime.registry`.

Why: every command (`plan`, `up`, `status`, `verify`, `down`, `render`, and
:func:`attach`) must find the same deployment from the same few arguments, take the
settings it recorded for every flag left out, and refuse a flag that does not apply to its
target instead of ignoring it. Each target says which options it takes, where it keeps
its state and how to open a deployment; nothing above this module asks which target it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spire_fabric.errors import SpireFabricError
from spire_fabric.render.kubernetes import InstallerSecrets
from spire_fabric.runtime.deployment import Change, Deployment
from spire_fabric.topology import Target, Topology

__all__ = [
    "OPTION_FLAGS",
    "DeploymentOptions",
    "TargetError",
    "TargetProvider",
    "setting_change",
]


class TargetError(SpireFabricError, ValueError):
    """The arguments do not name a deployment this target can open (a flag that does not
    apply to it, a state directory of another target or topology); says which and why."""


@dataclass(frozen=True)
class DeploymentOptions:
    """What a user may choose on top of a topology. ``None`` (or empty) keeps what the
    deployment recorded, or the default the first time: a setting sticks until a flag
    changes it, and `plan` shows that change."""

    port_base: int | None = None
    datastore: str | None = None  # a URL, or "sqlite" to go back to SQLite
    kubeconfig: str | None = None
    contexts: Mapping[str, str] = field(default_factory=dict)
    images: Mapping[str, str] = field(default_factory=dict)
    workload_socket: str | None = None
    timeout: float | None = None

    def given(self) -> list[str]:
        """The options the user gave, by field name."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]


OPTION_FLAGS = {
    "port_base": "--port-base",
    "datastore": "--datastore",
    "kubeconfig": "--kubeconfig",
    "contexts": "--context",
    "images": "--image",
    "workload_socket": "--workload-socket",
    "timeout": "--timeout",
}


class TargetProvider(Protocol):
    """One target: where its deployments live and how they open."""

    name: Target
    options: frozenset[str]  # the DeploymentOptions fields it takes
    converge_s: float  # how long `up` retries verify while the deployment settles
    verify_pause_s: float

    def state_dir(self, topology_name: str) -> Path:
        """The default state directory of topology ``topology_name`` on this target."""
        ...

    def holds(self, state_dir: Path) -> bool:
        """Whether ``state_dir`` holds a deployment of this target."""
        ...

    def recorded_topology(self, state_dir: Path) -> Topology:
        """The topology the deployment in ``state_dir`` was made from."""
        ...

    def create(
        self, topology: Topology, state_dir: Path, options: DeploymentOptions
    ) -> Deployment:
        """For `plan` and `up`: the recorded settings with the given options on top."""
        ...

    def open(self, state_dir: Path) -> Deployment:
        """A deployment `up` made, as recorded."""
        ...

    def setting_changes(self, state_dir: Path, options: DeploymentOptions) -> list[Change]:
        """What the given options change against what the deployment recorded."""
        ...

    def applied(self, state_dir: Path) -> tuple[Topology, InstallerSecrets | None]:
        """The topology as `up` applied it there, and the values of the Secrets it made
        (Kubernetes), read from the state alone: what `render --state-dir` renders."""
        ...

    def failure_message(self, err: BaseException) -> str | None:
        """This target's failure as one line (None: not one of this target's)."""
        ...


def setting_change(name: str, old: Any, new: Any) -> Change:
    """One setting a flag changes, for the plan."""
    return Change("update", "setting", name, f"{old!r} -> {new!r} (given by "
                  f"{OPTION_FLAGS.get(name.replace('-', '_'), name)})")  # fmt: skip
