"""The SPIRE version of every component, recorded by `plan` and `up`, and the skew guard.

SPIRE's documented rules (doc/upgrading.md of SPIRE 1.13.3, "SPIRE Server Compatibility",
"SPIRE Agent Compatibility" and "Supported Upgrade Paths"):

- "Version skew within a SPIRE Server cluster is supported within +/- 1 minor version":
  the servers that share a datastore, and therefore a server's old and new version while
  its replicas roll.
- "SPIRE Agents must not be newer than the oldest SPIRE Server that they communicate
  with, and may be up to one minor version older."
- "SPIRE Servers must be upgraded before SPIRE Agents, and is limited to a jump of at most
  one minor version (regardless of patch version)."

What runs during an `up` is the union of what was recorded and what is planned (a rollout
replaces pods one at a time), so an agent is compared with the oldest of both versions of
its server: an `up` that raises servers and agents together is refused, and the user
raises the servers first. The 0.12.x-with-1.0.x exception is not modelled: SPIRE releases
before 1.0 are out of scope here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.errors import SpireFabricError
from spire_fabric.topology import Topology

__all__ = [
    "VERSIONS_FILE",
    "SpireVersion",
    "VersionSkewError",
    "check_skew",
    "checked_versions",
    "component_versions",
    "image_version",
    "load_versions",
    "save_versions",
    "skew_problems",
]

VERSIONS_FILE = "spire-versions.json"
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class VersionSkewError(SpireFabricError, ValueError):
    """An `up` would run SPIRE components at versions SPIRE does not support together."""


@dataclass(frozen=True, order=True)
class SpireVersion:
    """A SPIRE release, ``major.minor.patch``."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SpireVersion:
        m = _VERSION.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"{text!r} is not a SPIRE version (x.y.z)")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    def minors_from(self, other: SpireVersion) -> int:
        """How many minor releases lie between ``other`` and this one (a major release
        counts as more than one, which no rule allows to skip)."""
        if self.major != other.major:
            return 1000 * (self.major - other.major)
        return self.minor - other.minor

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def image_version(image: str) -> str | None:
    """The SPIRE version an image reference names by its tag (``…/spire-server:1.13.3``);
    None for a digest or a tag that is not a version (the guard cannot check those)."""
    name = image.split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    return tag.lstrip("v") if _VERSION.fullmatch(tag) else None


def component_versions(
    topology: Topology, server_version: str | None, agent_version: str | None
) -> dict[str, str]:
    """``server/<name>`` and ``agent/<name>`` of the topology -> the version it will run
    (components whose version is unknown are left out)."""
    out: dict[str, str] = {}
    for s in topology.servers:
        if server_version:
            out[f"server/{s.name}"] = server_version
    for a in topology.agents:
        if agent_version:
            out[f"agent/{a.name}"] = agent_version
    return out


def skew_problems(
    topology: Topology, recorded: Mapping[str, str], planned: Mapping[str, str]
) -> list[str]:
    """Every way ``planned`` (after ``recorded``) breaks SPIRE's rules, one line each."""
    problems: list[str] = []

    def versions(key: str) -> list[SpireVersion]:
        return [SpireVersion.parse(v) for v in (recorded.get(key), planned.get(key)) if v]

    for s in topology.servers:
        key = f"server/{s.name}"
        was, will = recorded.get(key), planned.get(key)
        if was and will:
            jump = SpireVersion.parse(will).minors_from(SpireVersion.parse(was))
            if abs(jump) > 1:
                direction = "upgrade" if jump > 0 else "downgrade"
                problems.append(
                    f"{key}: {direction} {was} -> {will} moves {abs(jump)} minor versions; "
                    "SPIRE supports one at a time (doc/upgrading.md): go through each "
                    "minor release in turn"
                )
    for a in topology.agents:
        key = f"agent/{a.name}"
        mine = planned.get(key)
        server_versions = versions(f"server/{a.server}")
        if not mine or not server_versions:
            continue
        agent, oldest = SpireVersion.parse(mine), min(server_versions)
        if agent > oldest:
            problems.append(
                f"{key}: {agent} would be newer than the oldest version of its server "
                f"{a.server} ({oldest}); SPIRE agents must not be newer than the oldest "
                "server they talk to (doc/upgrading.md): upgrade the servers first"
            )
        elif max(server_versions).minors_from(agent) > 1:
            problems.append(
                f"{key}: {agent} would be more than one minor version older than its server "
                f"{a.server} ({max(server_versions)}); SPIRE agents may be at most one minor "
                "older (doc/upgrading.md): upgrade the agents before the servers move on"
            )
    return problems


def check_skew(
    topology: Topology, recorded: Mapping[str, str], planned: Mapping[str, str]
) -> None:
    """Raise :class:`VersionSkewError` listing every problem, before `up` changes anything."""
    problems = skew_problems(topology, recorded, planned)
    if problems:
        raise VersionSkewError(
            "refusing a SPIRE version skew SPIRE does not support:\n  " + "\n  ".join(problems)
        )


def checked_versions(
    topology: Topology, state_dir: Path, server_version: str | None, agent_version: str | None
) -> dict[str, str]:
    """What `plan` shows and `up` records: the version of every component, checked
    against what the last `up` recorded in ``state_dir`` (raises on a skew)."""
    planned = component_versions(topology, server_version, agent_version)
    check_skew(topology, load_versions(state_dir), planned)
    return planned


def load_versions(state_dir: Path) -> dict[str, str]:
    """What the last `up` recorded (empty before any)."""
    f = state_dir / VERSIONS_FILE
    if not f.exists():
        return {}
    data = json.loads(f.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def save_versions(state_dir: Path, versions: Mapping[str, str]) -> None:
    """Record what `up` runs now (a component the topology dropped is dropped here too)."""
    text = json.dumps(dict(sorted(versions.items())), indent=2) + "\n"
    (state_dir / VERSIONS_FILE).write_text(text, encoding="utf-8")
