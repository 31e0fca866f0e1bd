"""Start, reconfigure, inspect and stop the supervisor of one state directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spire_fabric.errors import SpireFabricError
from spire_fabric.runtime.local.supervisor import (
    Component,
    pid_alive,
    process_cmdline,
    terminate_pid,
)

_MODULE = "spire_fabric.runtime.local.supervisor"


class SupervisorError(SpireFabricError, RuntimeError):
    """The supervisor could not be started, reached or stopped."""


@dataclass(frozen=True)
class ComponentState:
    name: str
    pid: int | None
    running: bool
    restarts: int
    last_exit: str | None
    started_at: float | None = None  # Unix time of the current run


class SupervisorClient:
    """Talks to the supervisor of `state_dir` through its files and signals."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.run_dir = self.state_dir / "run"
        self.log_path = self.state_dir / "logs" / "supervisor.log"

    @property
    def pid(self) -> int | None:
        """The supervisor's pid if it is alive and really is our supervisor for this dir."""
        try:
            pid = int((self.run_dir / "supervisor.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        cmdline = process_cmdline(pid)
        if not cmdline or _MODULE not in cmdline or str(self.state_dir) not in cmdline:
            return None
        return pid if pid_alive(pid) else None

    def ensure_running(self, timeout: float = 10.0) -> int:
        pid = self.pid
        if pid is not None:
            return pid
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            # A new session: the supervisor outlives this command and its terminal.
            subprocess.Popen(
                [sys.executable, "-m", _MODULE, "--state-dir", str(self.state_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid
            if pid is not None:
                return pid
            time.sleep(0.05)
        raise SupervisorError(f"the supervisor did not start; see {self.log_path}")

    def set_components(self, components: Iterable[Component]) -> None:
        """Write the plan and tell the supervisor to apply it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = {"components": [c.to_json() for c in components]}
        tmp = self.run_dir / "components.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.run_dir / "components.json")
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def planned(self) -> list[Component]:
        try:
            data = json.loads((self.run_dir / "components.json").read_text())
        except (OSError, ValueError):
            return []
        return [Component.from_json(c) for c in data.get("components", [])]

    def states(self) -> dict[str, ComponentState]:
        try:
            data: dict[str, Any] = json.loads((self.run_dir / "status.json").read_text())
        except (OSError, ValueError):
            data = {"components": {}}
        states = {}
        for component in self.planned():
            raw = data.get("components", {}).get(component.name, {})
            pid = self.component_pid(component)
            states[component.name] = ComponentState(
                name=component.name,
                pid=pid,
                # alive is alive: orphans of a dead supervisor still serve
                running=pid is not None,
                restarts=int(raw.get("restarts", 0)),
                last_exit=raw.get("last_exit"),
                started_at=raw.get("started_at") if pid is not None else None,
            )
        return states

    def component_pid(self, component: Component) -> int | None:
        """The recorded pid of a component, if that process is alive and is that component."""
        try:
            pid = int((self.run_dir / f"{component.name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid) or process_cmdline(pid) != list(component.argv):
            return None
        return pid

    def stop(self, timeout: float = 30.0) -> list[int]:
        """Stop the supervisor and everything it started; return the pids that were stopped.

        Recorded component pids are re-checked afterwards and terminated if anything
        survived (e.g. the supervisor had died and left orphans).
        """
        recorded = [pid for c in self.planned() if (pid := self.component_pid(c)) is not None]
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.05)
            if pid_alive(pid):
                raise SupervisorError(
                    f"the supervisor (pid {pid}) did not stop within {timeout:.0f}s"
                )
        for child in recorded:
            if pid_alive(child):
                terminate_pid(child, 10.0)
        for pidfile in self.run_dir.glob("*.pid"):
            pidfile.unlink(missing_ok=True)
        return [p for p in ([pid] if pid else []) + recorded]
