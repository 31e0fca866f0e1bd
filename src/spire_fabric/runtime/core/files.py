"""A workload's managed files: names are checked the same way on every target."""

from __future__ import annotations

import re

from spire_fabric.runtime.core.errors import UpError
from spire_fabric.topology import Topology, Workload, workload_uses_files

__all__ = ["files_workload"]

# a Secret's data key (and a plain file name): no directories, no dot-only names
_NAME = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def files_workload(topology: Topology, workload: str, name: str) -> Workload:
    """The workload, if ``name`` may be one of its managed files; else one clear error."""
    w = topology.workload(workload)
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise UpError(f"{name!r} is not a file name (letters, digits, '-', '_', '.')")
    if not workload_uses_files(w):
        raise UpError(
            f"workload {workload} has no managed files: its run description names no {{files}}"
        )
    return w
