"""The state directory of a local deployment: what was deployed, with which settings.

Why a record: `up` must be idempotent and must refuse to mix two topologies in one
directory; `status`, `verify` and `down` must work without being told the topology again.
The directory is 0700 because it holds CA keys and (for external datastores) a DSN.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spire_fabric.runtime.local.localize import DEFAULT_PORT_BASE, LocalSettings
from spire_fabric.topology import Topology, dump_topology, load_topology

__all__ = ["DeploymentRecord", "StateDir", "StateError", "default_state_dir"]

STATE_VERSION = 1


class StateError(RuntimeError):
    """The state directory cannot be used for this request; says why and how to fix it."""


def default_state_dir(topology_name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "spire-fabric" / topology_name


@dataclass
class DeploymentRecord:
    """Persisted settings of one deployment (state.json)."""

    topology: str
    port_base: int = DEFAULT_PORT_BASE
    datastore_url: str | None = None
    uid: int = field(default_factory=os.getuid)
    join_tokens: dict[str, str] = field(default_factory=dict)  # agent -> token it attested with
    version: int = STATE_VERSION

    @property
    def settings(self) -> LocalSettings:
        return LocalSettings(
            port_base=self.port_base, datastore_url=self.datastore_url, uid=self.uid
        )


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().resolve()

    @property
    def record_path(self) -> Path:
        return self.path / "state.json"

    @property
    def topology_path(self) -> Path:
        return self.path / "topology.yaml"

    @property
    def ca_dir(self) -> Path:
        return self.path / "ca"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def exists(self) -> bool:
        return self.record_path.exists()

    def load(self) -> tuple[DeploymentRecord, Topology]:
        if not self.exists():
            raise StateError(
                f"{self.path} holds no spire_fabric deployment (no state.json); "
                "run `python -m spire_fabric.deploy up` first or pass --state-dir"
            )
        try:
            raw = json.loads(self.record_path.read_text())
            record = DeploymentRecord(**raw)
        except (OSError, ValueError, TypeError) as err:
            raise StateError(f"{self.record_path} is unreadable ({err})") from err
        return record, load_topology(self.topology_path)

    def check_compatible(self, topology: Topology) -> None:
        """Refuse to deploy a different topology over an existing one: nothing is changed."""
        if not self.exists():
            if self.path.exists() and any(self.path.iterdir()):
                raise StateError(
                    f"state directory {self.path} is not empty and holds no spire_fabric "
                    "deployment; pass an empty or new --state-dir"
                )
            return
        record, _ = self.load()
        if record.topology != topology.name:
            raise StateError(
                f"state directory {self.path} belongs to topology {record.topology!r}, not "
                f"{topology.name!r}; run `down --purge --state-dir {self.path}` first, or "
                "pass another --state-dir"
            )

    def save(self, record: DeploymentRecord, topology: Topology) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        _write_private(self.topology_path, dump_topology(topology))
        _write_private(self.record_path, json.dumps(asdict(record), indent=2, sort_keys=True))


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
