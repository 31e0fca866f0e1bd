"""What every subcommand shares: reading ``--topology`` and ``--target``, and user errors."""

from __future__ import annotations

import argparse
from pathlib import Path

from spire_fabric.errors import SpireFabricError
from spire_fabric.topology import (
    PRESET_NAMES,
    TARGETS,
    Topology,
    TopologyError,
    load_topology,
    preset,
)

EXIT_USAGE = 2


class UsageError(SpireFabricError):
    """Bad input from the user: printed as one message, exit status 2, nothing written."""


def add_topology_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--topology",
        required=required,
        default=None if required else "enterprise",
        metavar="PRESET|FILE.yaml",
        help=f"a preset ({', '.join(PRESET_NAMES)}) or a topology YAML file"
        + ("" if required else " (default: enterprise)"),
    )
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="local",
        help="where the topology is made real (default: local)",
    )


def resolve_topology(value: str) -> Topology:
    """A preset name, else a YAML file; any problem becomes one UsageError."""
    if value in PRESET_NAMES:
        return preset(value)
    path = Path(value)
    if not path.suffix and not path.exists():
        raise UsageError(
            f"--topology {value!r}: not a preset ({', '.join(PRESET_NAMES)}) and no such file"
        )
    if not path.is_file():
        raise UsageError(f"--topology {value!r}: no such file")
    try:
        return load_topology(path)
    except TopologyError as e:
        raise UsageError(f"--topology {value}: {e}") from e
