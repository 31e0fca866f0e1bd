"""`file_lock`: the one advisory file lock of spire_fabric (a cache being filled, a state
directory in use, the test clusters being changed).

`fcntl.flock` on a lock file beside what it guards: the kernel drops the lock when the
holder dies, so a killed process never leaves a stale lock behind (a pid file would). The
lock file itself is left in place; deleting it would let two processes lock two different
files of the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path

from spire_fabric.errors import SpireFabricError

__all__ = ["FileLockBusy", "file_lock"]


class FileLockBusy(SpireFabricError, BlockingIOError):
    """A non-blocking `file_lock` found the lock held by another process."""


@contextlib.contextmanager
def file_lock(
    path: Path,
    *,
    blocking: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created, with its parent, if missing) for the block.

    Without `blocking`, a held lock raises `FileLockBusy` naming the file instead of waiting.
    `on_wait` is told once, before waiting, that another process holds the lock, so a long
    wait (another process building the same cache) is never silent.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            if not blocking:
                raise FileLockBusy(f"{path} is locked by another process") from exc
            if on_wait is not None:
                on_wait(f"waiting for another process holding {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
