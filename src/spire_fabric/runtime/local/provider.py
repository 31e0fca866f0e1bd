"""The local target in the registry (:mod:`spire_fabric.runtime.targets`)."""

from __future__ import annotations

from pathlib import Path

from spire_fabric.render.kubernetes import InstallerSecrets
from spire_fabric.runtime.binaries import SpireBinariesError
from spire_fabric.runtime.core import UpError
from spire_fabric.runtime.deployment import Change
from spire_fabric.runtime.local.deployment import LocalDeployment
from spire_fabric.runtime.local.localize import DEFAULT_PORT_BASE, LocalSettings
from spire_fabric.runtime.local.state import DeploymentRecord, StateDir, default_state_dir
from spire_fabric.runtime.targets import DeploymentOptions, setting_change
from spire_fabric.topology import Target, Topology

__all__ = ["LocalProvider"]


class LocalProvider:
    """Supervised processes on this machine, one state directory per deployment."""

    name: Target = "local"
    options = frozenset({"port_base", "datastore"})
    converge_s = 15.0  # healing reaches agents on their next sync (5 s in SPIRE 1.13)
    verify_pause_s = 1.0

    def state_dir(self, topology_name: str) -> Path:
        return default_state_dir(topology_name)

    def holds(self, state_dir: Path) -> bool:
        return StateDir(state_dir).exists()

    def recorded_topology(self, state_dir: Path) -> Topology:
        return StateDir(state_dir).load()[1]

    def _recorded(self, state_dir: Path) -> DeploymentRecord | None:
        state = StateDir(state_dir)
        return state.load()[0] if state.exists() else None

    def settings(self, state_dir: Path, options: DeploymentOptions) -> LocalSettings:
        """The recorded settings with the given options on top (defaults the first time)."""
        rec = self._recorded(state_dir)
        port_base = options.port_base or (rec.port_base if rec else DEFAULT_PORT_BASE)
        if options.datastore:
            datastore = None if options.datastore == "sqlite" else options.datastore
        else:
            datastore = rec.datastore_url if rec else None
        return LocalSettings(port_base=port_base, datastore_url=datastore)

    def create(
        self, topology: Topology, state_dir: Path, options: DeploymentOptions
    ) -> LocalDeployment:
        return LocalDeployment.create(topology, state_dir, self.settings(state_dir, options))

    def open(self, state_dir: Path) -> LocalDeployment:
        return LocalDeployment.open(state_dir)

    def setting_changes(self, state_dir: Path, options: DeploymentOptions) -> list[Change]:
        rec = self._recorded(state_dir)
        if rec is None:
            return []
        new = self.settings(state_dir, options)
        out = []
        if new.port_base != rec.port_base:
            out.append(setting_change("port-base", rec.port_base, new.port_base))
        if new.datastore_url != rec.datastore_url:
            out.append(setting_change("datastore", _redact(rec.datastore_url),
                                      _redact(new.datastore_url)))  # fmt: skip
        return out

    def applied(self, state_dir: Path) -> tuple[Topology, InstallerSecrets | None]:
        return self.recorded_topology(state_dir), None

    def failure_message(self, err: BaseException) -> str | None:
        return str(err) if isinstance(err, UpError | SpireBinariesError) else None


def _redact(url: str | None) -> str:
    """A datastore URL without its password (the plan is printed)."""
    if url is None:
        return "sqlite"
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
