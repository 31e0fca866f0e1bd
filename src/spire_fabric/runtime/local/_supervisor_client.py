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
from spire_fabric.runtime.local._procfs import (
    COMPONENT_ENV,
    STATE_DIR_ENV,
    deployment_processes,
    pid_alive,
    process_cmdline,
    process_start_time,
    terminate_pid,
)
from spire_fabric.runtime.local.supervisor import Component, ProcessRecord, record_path

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
        # The caller may itself run under some deployment's supervisor: the supervisor must
        # not carry that deployment's marker (it would count as one of its processes).
        env = {k: v for k, v in os.environ.items() if k not in (STATE_DIR_ENV, COMPONENT_ENV)}
        with open(self.log_path, "ab") as out:
            # A new session: the supervisor outlives this command and its terminal.
            subprocess.Popen(
                [sys.executable, "-m", _MODULE, "--state-dir", str(self.state_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                env=env,
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
            record = self._live_record(component.name, component.argv)
            pid = record.pid if record is not None else None
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

    def _live_record(
        self, name: str, planned_argv: tuple[str, ...] | None
    ) -> ProcessRecord | None:
        """The recorded process of component ``name`` if it is still that process and was
        started for this deployment, whatever command it runs: after a settings change an
        orphan may run an older one, and it is ours all the same. (``planned_argv`` only
        recognises pid files of older versions, which hold nothing but the pid.)"""
        record = ProcessRecord.read(record_path(self.run_dir, name))
        if record is None or not record.is_live(self.state_dir, planned_argv):
            return None
        return record

    def component_pid(self, component: Component) -> int | None:
        """The recorded pid of a component, if that process is alive and is that component."""
        record = self._live_record(component.name, component.argv)
        return record.pid if record is not None else None

    def running_components(self) -> dict[str, Component]:
        """What really runs, per component: the command a live recorded process was started
        with (it differs from :meth:`planned` while a dead supervisor's orphans run)."""
        running = {}
        for component in self.planned():
            record = self._live_record(component.name, component.argv)
            if record is not None:
                running[component.name] = record.component or component
        return running

    def stop(self, timeout: float = 30.0) -> list[int]:
        """Stop the supervisor and everything the deployment started; return the pids that
        were stopped.

        What survives the supervisor (it had died and left orphans, or a pid file was lost)
        is found by its recorded pid and start time, then by the state-directory marker in
        its environment, and terminated: workloads, then agents, then servers.
        """
        planned = {c.name: c.argv for c in self.planned()}
        recorded = []
        for pidfile in self.run_dir.glob("*.pid"):
            name = pidfile.stem
            if name != "supervisor" and (rec := self._live_record(name, planned.get(name))):
                recorded.append((name, rec.pid, rec.start_time))
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
        known = {p for _, p, _ in recorded}
        leftovers = [
            (name, p, process_start_time(p))
            for p, name in deployment_processes(self.state_dir).items()
            if p not in known
        ]
        for _, child, start_time in sorted(recorded + leftovers, key=_stop_order):
            terminate_pid(child, 10.0, start_time)
        for pidfile in self.run_dir.glob("*.pid"):
            pidfile.unlink(missing_ok=True)
        return ([pid] if pid else []) + [p for _, p, _ in recorded + leftovers]


def _stop_order(item: tuple[str, int, int | None]) -> tuple[int, str]:
    kind = item[0].split(":", 1)[0]
    return ({"workload": 0, "sidecar": 1, "agent": 2, "server": 3}.get(kind, 0), item[0])
