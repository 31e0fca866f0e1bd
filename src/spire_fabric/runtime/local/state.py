"""The state directory of a local deployment: what was deployed, with which settings.

Why a record: `up` must be idempotent and must refuse to mix two topologies in one
directory; `status`, `verify` and `down` must work without being told the topology again.
The directory is 0700 because it holds CA keys and (for external datastores) a DSN.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spire_fabric._filelock import FileLockBusy, file_lock
from spire_fabric._wait import wait_until
from spire_fabric.errors import SpireFabricError
from spire_fabric.runtime.local.localize import DEFAULT_PORT_BASE, LocalSettings
from spire_fabric.topology import Topology, dump_topology, load_topology

__all__ = [
    "LOCK_FILE",
    "DeploymentRecord",
    "StateDir",
    "StateError",
    "default_state_dir",
    "state_lock",
]

STATE_VERSION = 1
LOCK_FILE = "lock"
LOCK_WAIT_S = 300.0


class StateError(SpireFabricError, RuntimeError):
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
    def __init__(self, path: str | os.PathLike[str]) -> None:
        # a notebook passes a str as often as a Path
        self.path = Path(path).expanduser().resolve()

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
            if self.path.exists() and any(p.name != LOCK_FILE for p in self.path.iterdir()):
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


@contextlib.contextmanager
def state_lock(
    path: Path,
    command: str,
    *,
    timeout: float = LOCK_WAIT_S,
    waiting: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the state directory's lock for one command, as Terraform locks its state.

    A second `up`/`down` on the same directory waits for the first (``waiting`` is told
    once who holds the lock) and gives up after ``timeout`` with the holder's pid. The
    lock is an `flock`, so a crashed holder releases it with its last file descriptor. A
    directory this call had to create is removed again if the command leaves it empty, so
    bad input leaves nothing behind.
    """
    path = path.expanduser().resolve()
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_path = path / LOCK_FILE
    told: list[str] = []

    def acquire() -> contextlib.ExitStack | None:
        held = contextlib.ExitStack()
        try:
            held.enter_context(file_lock(lock_path, blocking=False))
        except FileLockBusy:
            if waiting is not None and not told:
                told.append(_lock_holder(lock_path))
                waiting(f"waiting for {told[0]}, which holds the lock on {path}")
            return None
        return held

    def busy(_: str) -> StateError:
        return StateError(
            f"state directory {path} is locked by {_lock_holder(lock_path)}; it is still "
            f"running after {timeout:.0f}s. Wait for it, or stop that process."
        )

    held = None
    try:
        held = wait_until(acquire, timeout, f"the lock of {path}", interval=0.1, error=busy,
                          retry_on=())  # fmt: skip
        # who holds it, for a second command to name (the flock is on the file, not on
        # this write's descriptor)
        lock_path.write_text(json.dumps({"pid": os.getpid(), "command": command}))
        yield
    finally:
        if held is not None:
            held.close()
        if created and path.exists() and [p.name for p in path.iterdir()] == [LOCK_FILE]:
            lock_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.rmdir()


def _lock_holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text() or "{}")
        return f"pid {info['pid']} (`{info['command']}`)"
    except (OSError, ValueError, KeyError):
        return "another process"
