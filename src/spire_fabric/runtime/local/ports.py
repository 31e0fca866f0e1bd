"""Is a loopback port free, and if not, who holds it?

Why name the owner: "address already in use" from SPIRE's log is the classic first-run
failure; saying "port 31081 is held by pid 1234 (nginx)" before anything starts turns it
into a one-line fix. Owners are found through /proc (Linux); elsewhere we say "unknown".
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PortInUse", "find_port_owner", "is_listening", "port_in_use"]


@dataclass(frozen=True)
class PortInUse:
    host: str
    port: int
    owner_pid: int | None
    owner_command: str | None

    def describe(self) -> str:
        if self.owner_pid is None:
            return f"port {self.port} on {self.host} is already in use (owner unknown)"
        return (
            f"port {self.port} on {self.host} is already in use by pid {self.owner_pid} "
            f"({self.owner_command or '?'})"
        )


def port_in_use(host: str, port: int) -> PortInUse | None:
    """None when we could bind `host:port` right now; else who holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            pid, command = find_port_owner(port)
            return PortInUse(host, port, pid, command)
    return None


def find_port_owner(port: int) -> tuple[int | None, str | None]:
    """The pid and command line of a process listening on TCP `port`, via /proc."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None, None
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (pid_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                    return int(pid_dir.name), cmd.decode(errors="replace")[:200]
    return None, None


def is_listening(port: int) -> bool:
    """Whether any process listens on TCP `port` (connections in TIME_WAIT do not count)."""
    return bool(_listening_inodes(port))


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(inode)
    return inodes
