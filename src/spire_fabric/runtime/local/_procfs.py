"""What /proc says about a process: is it alive, is it still the process we started, and
which deployment started it.

Why identity by more than a pid: a pid file outlives its process (kill -9 of the
supervisor, a reboot) and Linux reuses pids, so "pid 4711 is alive" proves nothing. A pid
together with its start time (field 22 of ``/proc/<pid>/stat``, fixed at fork) names one
process for the life of the boot, and the marker the supervisor puts in every child's
environment (``SPIRE_FABRIC_STATE_DIR``) says which deployment it belongs to. Nothing here
matches processes by name or by command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = [
    "COMPONENT_ENV",
    "STATE_DIR_ENV",
    "deployment_processes",
    "parent_pid",
    "pid_alive",
    "process_cmdline",
    "process_environ",
    "process_start_time",
    "terminate_pid",
]

# Set by the supervisor in the environment of every process it starts (and thus inherited
# by their children): the deployment's state directory and the component's name.
STATE_DIR_ENV = "SPIRE_FABRIC_STATE_DIR"
COMPONENT_ENV = "SPIRE_FABRIC_COMPONENT"


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (the command name in field 2 may hold spaces and
    parentheses, so split after its last ')')."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie counts as gone."""
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] != "Z"


def parent_pid(pid: int) -> int | None:
    """The parent's pid (stat field 4), or None for a process that is gone."""
    fields = _stat_fields(pid)
    try:
        return int(fields[1]) if fields and len(fields) > 1 else None
    except ValueError:
        return None


def process_start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (stat field 22), or None."""
    fields = _stat_fields(pid)
    if not fields or len(fields) < 20 or fields[0] == "Z":
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def process_cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None (gone, zombie, or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def process_environ(pid: int) -> dict[str, str] | None:
    """The environment a process started with, or None (gone, or another user's)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            env[key] = value
    return env


def deployment_processes(state_dir: Path) -> dict[int, str]:
    """Every live process started for the deployment in ``state_dir`` (by the supervisor,
    or by one of its children), pid -> component name, found by the environment marker."""
    found: dict[int, str] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        env = process_environ(pid)
        if env and env.get(STATE_DIR_ENV) == str(state_dir) and pid_alive(pid):
            found[pid] = env.get(COMPONENT_ENV, "")
    return found


def terminate_pid(pid: int, grace: float, start_time: int | None = None) -> None:
    """SIGTERM a pid we recorded, then SIGKILL after ``grace`` seconds. With
    ``start_time``, a pid that now names another process is left alone."""

    def still_ours() -> bool:
        if start_time is None:
            return pid_alive(pid)
        return process_start_time(pid) == start_time

    if not still_ours():
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not still_ours():
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
