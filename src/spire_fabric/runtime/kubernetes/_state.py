"""What a Kubernetes deployment keeps on the installer's machine: the topology, the
settings (kubeconfig, contexts, images) and the offline Enterprise Root CA's key, which
never enters a cluster. Directory 0700, under the same root as local deployments."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.topology import Topology, dump_topology, load_topology

SETTINGS_FILE = "kubernetes.json"
TOPOLOGY_FILE = "topology.yaml"
APPLIED_FILE = "applied-topology.yaml"  # as `up` applied it: images, node addresses, socket


@dataclass
class KubernetesSettings:
    """How to reach the clusters and what to run there.

    ``images`` overrides the topology's images by role (each field of ``Images``, and
    ``mysql``), by tag or digest: a private registry, or images built for a test cluster.
    ``workload_socket`` overrides the topology's choice (``host-path`` where the SPIFFE CSI
    driver cannot be installed)."""

    kubeconfig: str | None = None
    contexts: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    workload_socket: str | None = None
    timeout: float = 300.0


def default_state_dir(topology_name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "spire-fabric" / f"{topology_name}@kubernetes"


def save(
    path: Path, topology: Topology, settings: KubernetesSettings, applied: Topology | None = None
) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    existing = path / TOPOLOGY_FILE
    if existing.exists():
        old = load_topology(existing, validate=False)
        if old.name != topology.name:
            raise KubernetesTargetError(
                f"{path} holds the Kubernetes deployment of topology {old.name!r}, not "
                f"{topology.name!r}; pass another --state-dir"
            )
    (path / TOPOLOGY_FILE).write_text(dump_topology(topology), encoding="utf-8")
    (path / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=2), encoding="utf-8")
    if applied is not None:
        (path / APPLIED_FILE).write_text(dump_topology(applied), encoding="utf-8")


def load_applied(path: Path) -> Topology | None:
    """The topology as the last `up` applied it (None before any)."""
    f = path / APPLIED_FILE
    return load_topology(f, validate=False) if f.exists() else None


def load(path: Path) -> tuple[Topology, KubernetesSettings]:
    if not (path / SETTINGS_FILE).exists():
        raise KubernetesTargetError(
            f"no Kubernetes deployment in {path} (run `up --target kubernetes` first)"
        )
    settings = KubernetesSettings(**json.loads((path / SETTINGS_FILE).read_text()))
    return load_topology(path / TOPOLOGY_FILE), settings
