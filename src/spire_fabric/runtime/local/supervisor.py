"""A small process supervisor that keeps a local topology's processes running.

Why our own: `deploy up` must return while SPIRE keeps running, crashed processes must come
back with backoff (and the log must say why they died), and `deploy down` must stop exactly
what was started — by recorded pid, never by name. systemd or supervisord are not on every
developer machine, and a detached Python process with a plan file is enough.

Protocol, all under `<state>/run/`:
- `components.json`: what should run (`up` writes it, then sends SIGHUP);
- `supervisor.pid`: this process; `status.json`: per component pid, restarts, last exit;
- `<component>.pid`: a :class:`ProcessRecord` (pid, start time, the component it runs), so
  a new supervisor can tell its predecessor's children from a reused pid;
- SIGTERM: stop every child (SIGTERM, then SIGKILL after a grace period) and exit.
Every child's environment carries ``SPIRE_FABRIC_STATE_DIR`` and ``SPIRE_FABRIC_COMPONENT``
(inherited by its own children), so everything a deployment started can be found even
without a pid file (:func:`._procfs.deployment_processes`).

A supervisor that died (kill -9) leaves its children running. The next one adopts each
child that is still the recorded process and runs the planned command unchanged, instead
of restarting healthy SPIRE servers, agents and workloads; it stops the others.

Run: python -m spire_fabric.runtime.local.supervisor --state-dir DIR
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spire_fabric.runtime.local._procfs import (
    COMPONENT_ENV,
    STATE_DIR_ENV,
    deployment_processes,
    pid_alive,
    process_cmdline,
    process_environ,
    process_start_time,
    terminate_pid,
)

__all__ = [
    "Component",
    "ComponentStatus",
    "ProcessRecord",
    "pid_alive",
    "process_cmdline",
    "run_supervisor",
    "terminate_pid",
]

log = logging.getLogger("spire_fabric.supervisor")

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a run this long resets the backoff
STOP_GRACE_S = 10.0
TICK_S = 0.1


@dataclass(frozen=True)
class Component:
    """One process the supervisor keeps running."""

    name: str
    argv: tuple[str, ...]
    log_path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "argv": list(self.argv),
            "log_path": self.log_path,
            "env": dict(sorted(self.env.items())),
            "cwd": self.cwd,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Component:
        return cls(
            name=data["name"],
            argv=tuple(data["argv"]),
            log_path=data["log_path"],
            env=dict(data.get("env") or {}),
            cwd=data.get("cwd"),
        )


@dataclass(frozen=True)
class ProcessRecord:
    """``run/<component>.pid``: the process that runs a component, and as what.

    ``start_time`` (ticks since boot) and the state-directory marker in the process's
    environment make the pid name one process: a reused pid is never taken for ours.
    ``component`` is what the process was started as, so a successor can adopt it only if
    the plan still asks for exactly that. Pid files of older versions hold only the pid;
    they read as a record without start time or component.
    """

    pid: int
    start_time: int | None = None
    started_at: float | None = None  # Unix time
    component: Component | None = None

    def to_text(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "start_time": self.start_time,
                "started_at": self.started_at,
                "component": self.component.to_json() if self.component else None,
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def read(cls, path: Path) -> ProcessRecord | None:
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        if text.isdigit():  # an older version's pid file
            return cls(int(text))
        try:
            data = json.loads(text)
            component = data.get("component")
            return cls(
                pid=int(data["pid"]),
                start_time=data.get("start_time"),
                started_at=data.get("started_at"),
                component=Component.from_json(component) if component else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def is_live(self, state_dir: Path, legacy_argv: tuple[str, ...] | None = None) -> bool:
        """Still the recorded process, started for this state directory. A record of an
        older version (pid only) is recognised by ``legacy_argv``, the planned command."""
        if self.start_time is None:
            return (
                legacy_argv is not None
                and pid_alive(self.pid)
                and process_cmdline(self.pid) == list(legacy_argv)
            )
        if process_start_time(self.pid) != self.start_time:
            return False
        env = process_environ(self.pid)
        return env is not None and env.get(STATE_DIR_ENV) == str(state_dir)


def record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


@dataclass
class ComponentStatus:
    """What `status` shows for a component; written to status.json on every change."""

    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: str | None = None
    next_start_at: float | None = None


@dataclass
class _Running:
    component: Component
    status: ComponentStatus
    proc: subprocess.Popen[bytes] | None = None
    # a live child of a dead supervisor, kept instead of restarted: not our child, so it
    # is watched through /proc and its exit status is unknown
    adopted: ProcessRecord | None = None
    backoff: float = BACKOFF_INITIAL_S

    def exit_code(self) -> int | None:
        """None while the process runs; its exit code (-1 when unknown) once it ended."""
        if self.proc is not None:
            return self.proc.poll()
        if self.adopted is not None:
            alive = process_start_time(self.adopted.pid) == self.adopted.start_time
            return None if alive else -1
        return None

    @property
    def pid(self) -> int | None:
        if self.proc is not None:
            return self.proc.pid
        return self.adopted.pid if self.adopted is not None else None


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.run_dir = state_dir / "run"
        self.components_path = self.run_dir / "components.json"
        self.status_path = self.run_dir / "status.json"
        self.running: dict[str, _Running] = {}
        self._reload = True
        self._stop = False

    # signal handlers only set flags; the loop does the work
    def request_reload(self, *_: object) -> None:
        self._reload = True

    def request_stop(self, *_: object) -> None:
        self._stop = True

    def run(self) -> None:
        self._take_over_orphans()
        while not self._stop:
            if self._reload:
                self._reload = False
                self._apply(self._read_components())
            self._tick()
            time.sleep(TICK_S)
        self._stop_all()

    def _read_components(self) -> dict[str, Component]:
        try:
            data = json.loads(self.components_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.error("cannot read %s (%s); keeping the current plan", self.components_path, err)
            return {name: r.component for name, r in self.running.items()}
        return {c["name"]: Component.from_json(c) for c in data.get("components", [])}

    def _apply(self, wanted: dict[str, Component]) -> None:
        for name in sorted(set(self.running) - set(wanted)):
            log.info("%s: no longer planned; stopping it", name)
            self._stop_one(self.running.pop(name))
        for name, component in sorted(wanted.items()):
            current = self.running.get(name)
            if current is not None and current.component != component:
                log.info("%s: plan changed; restarting it", name)
                self._stop_one(current)
                current = None
            if current is None:
                self.running[name] = _Running(component, ComponentStatus())
        self._write_status()

    def _tick(self) -> None:
        changed = False
        now = time.time()
        for name, r in sorted(self.running.items()):
            if r.proc is not None or r.adopted is not None:
                code = r.exit_code()
                if code is None:
                    if r.status.started_at and now - r.status.started_at > STABLE_AFTER_S:
                        r.backoff = BACKOFF_INITIAL_S
                    continue
                r.status.last_exit = (
                    "exited (adopted from a previous supervisor: exit status unknown)"
                    if r.proc is None
                    else _describe_exit(code)
                )
                r.status.pid = None
                r.status.restarts += 1
                r.status.next_start_at = now + r.backoff
                log.warning(
                    "%s (pid %s) %s; restarting in %.1fs (restart #%d); log: %s",
                    name, r.pid, r.status.last_exit, r.backoff, r.status.restarts,
                    r.component.log_path,
                )  # fmt: skip
                r.backoff = min(r.backoff * 2, BACKOFF_MAX_S)
                r.proc = None
                r.adopted = None
                self._remove_pidfile(name)
                changed = True
            if r.proc is None and r.adopted is None and (r.status.next_start_at or 0) <= now:
                self._start(r)
                changed = True
        if changed:
            self._write_status()

    def _start(self, r: _Running) -> None:
        c = r.component
        Path(c.log_path).parent.mkdir(parents=True, exist_ok=True)
        if c.cwd is not None:  # a workload's own directory; made (again) on each start
            Path(c.cwd).mkdir(parents=True, exist_ok=True, mode=0o700)
        # the marker that ties the process (and its children) to this deployment
        env = {**os.environ, **c.env, STATE_DIR_ENV: str(self.state_dir), COMPONENT_ENV: c.name}
        try:
            with open(c.log_path, "ab") as out:
                r.proc = subprocess.Popen(
                    list(c.argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=c.cwd,
                )
        except OSError as err:
            r.status.last_exit = f"could not start: {err}"
            r.status.next_start_at = time.time() + r.backoff
            r.backoff = min(r.backoff * 2, BACKOFF_MAX_S)
            log.error("%s: could not start %s: %s", c.name, c.argv[0], err)
            return
        r.status.pid = r.proc.pid
        r.status.started_at = time.time()
        r.status.next_start_at = None
        # the child exists from fork on, so its start time is readable at once (and stays
        # readable while it is an unreaped zombie of ours, which is_live refuses anyway)
        record = ProcessRecord(
            r.proc.pid, process_start_time(r.proc.pid), r.status.started_at, c
        )
        _write_atomically(record_path(self.run_dir, c.name), record.to_text())
        log.info("%s: started pid %d", c.name, r.proc.pid)

    def _stop_one(self, r: _Running) -> None:
        proc = r.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", r.component.name, proc.pid)
                proc.kill()
                proc.wait()
            log.info("%s: stopped pid %d", r.component.name, proc.pid)
        if r.adopted is not None:
            terminate_pid(r.adopted.pid, STOP_GRACE_S, r.adopted.start_time)
            log.info("%s: stopped adopted pid %d", r.component.name, r.adopted.pid)
        r.proc = None
        r.adopted = None
        r.status.pid = None
        self._remove_pidfile(r.component.name)

    def _stop_all(self) -> None:
        # agents and workloads before servers: reverse of the planned start order
        for name in sorted(self.running, key=_stop_order):
            self._stop_one(self.running[name])
        self._write_status()

    def _take_over_orphans(self) -> None:
        """Children of a supervisor that died (kill -9) must neither run twice nor be
        restarted for nothing.

        A recorded process that is still that process (pid and start time), was started
        for this state directory, and runs exactly the planned component is adopted. Any
        other live process of this deployment (a changed command, no longer planned, or
        one whose pid file was lost) is stopped: by its pid, found through the marker in
        its environment, never by its name or command line.
        """
        planned = self._read_components()
        previous = self._previous_status()
        adopted: set[str] = set()
        for pidfile in sorted(self.run_dir.glob("*.pid")):
            name = pidfile.stem
            if name == "supervisor":
                continue
            record = ProcessRecord.read(pidfile)
            want = planned.get(name)
            legacy_argv = want.argv if want is not None else None
            if record is not None and record.is_live(self.state_dir, legacy_argv):
                if want is not None and record.component == want:
                    status = ComponentStatus(
                        pid=record.pid,
                        started_at=record.started_at,
                        restarts=int(previous.get(name, {}).get("restarts", 0)),
                        last_exit=previous.get(name, {}).get("last_exit"),
                    )
                    self.running[name] = _Running(want, status, adopted=record)
                    adopted.add(name)
                    log.info("%s: adopted pid %d left by a previous supervisor", name, record.pid)
                    continue
                why = "no longer planned" if want is None else "its command changed"
                log.warning("%s: stopping orphan pid %d (%s)", name, record.pid, why)
                terminate_pid(record.pid, STOP_GRACE_S, record.start_time)
            pidfile.unlink(missing_ok=True)
        keep = {r.adopted.pid for r in self.running.values() if r.adopted is not None}
        for pid, name in sorted(deployment_processes(self.state_dir).items()):
            # children of an adopted process carry its marker too: they are its business
            if pid in keep or name in adopted:
                continue
            log.warning("%s: stopping unrecorded process %d of this deployment", name, pid)
            terminate_pid(pid, STOP_GRACE_S, process_start_time(pid))

    def _previous_status(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.status_path.read_text())
            return dict(data.get("components") or {})
        except (OSError, ValueError, AttributeError):
            return {}

    def _remove_pidfile(self, name: str) -> None:
        record_path(self.run_dir, name).unlink(missing_ok=True)

    def _write_status(self) -> None:
        data = {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "components": {name: asdict(r.status) for name, r in sorted(self.running.items())},
        }
        _write_atomically(self.status_path, json.dumps(data, indent=2, sort_keys=True))


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _stop_order(name: str) -> tuple[int, str]:
    kind = name.split(":", 1)[0]
    return ({"workload": 0, "sidecar": 1, "agent": 2, "server": 3}.get(kind, 0), name)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def run_supervisor(state_dir: Path) -> int:
    run_dir = state_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stdout,
    )
    # One supervisor per state directory, whoever starts it: a second one (two `up` racing,
    # or a user starting it by hand) leaves the running one in charge and exits.
    lock_fd = os.open(run_dir / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("another supervisor already runs for %s; exiting", state_dir)
        os.close(lock_fd)
        return 0
    supervisor = Supervisor(state_dir)
    signal.signal(signal.SIGHUP, supervisor.request_reload)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    pidfile = run_dir / "supervisor.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    log.info("supervisor pid %d for %s", os.getpid(), state_dir)
    try:
        supervisor.run()
    finally:
        pidfile.unlink(missing_ok=True)
        log.info("supervisor stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    return run_supervisor(args.state_dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
