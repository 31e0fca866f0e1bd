"""`write_atomic`: the one way spire_fabric replaces a file that another program reads.

Written to a temporary name beside the target with its final mode, flushed, then renamed
over it: a reader (SPIRE's disk UpstreamAuthority rereads its files on every mint; nginx
reloading its SVID files) sees the old file or the new one, whole, never half a key, and a
private key is never readable by others even for a moment.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data`, file mode `mode` (the umask does not apply)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        # O_CREAT's mode is masked by the umask, and a leftover temporary keeps its old mode.
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
