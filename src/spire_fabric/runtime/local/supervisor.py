"""A small process supervisor that keeps a local topology's processes running.

Why our own: `deploy up` must return while SPIRE keeps running, crashed processes must come
back with backoff (and the log must say why they died), and `deploy down` must stop exactly
what was started — by recorded pid, never by name. systemd or supervisord are not on every
developer machine, and a detached Python process with a plan file is enough.

Protocol, all under `<state>/run/`:
- `components.json`: what should run (`up` writes it, then sends SIGHUP);
- `supervisor.pid`: this process; `status.json`: per component pid, restarts, last exit;
- SIGTERM: stop every child (SIGTERM, then SIGKILL after a grace period) and exit.

Run: python -m spire_fabric.runtime.local.supervisor --state-dir DIR
"""

from __future__ import annotations

import argparse
import contextlib
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

__all__ = ["Component", "ComponentStatus", "run_supervisor"]

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
    backoff: float = BACKOFF_INITIAL_S


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
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
        self._stop_orphans()
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
            if r.proc is not None:
                code = r.proc.poll()
                if code is None:
                    if r.status.started_at and now - r.status.started_at > STABLE_AFTER_S:
                        r.backoff = BACKOFF_INITIAL_S
                    continue
                r.status.last_exit = _describe_exit(code)
                r.status.pid = None
                r.status.restarts += 1
                r.status.next_start_at = now + r.backoff
                log.warning(
                    "%s (pid %s) %s; restarting in %.1fs (restart #%d); log: %s",
                    name, r.proc.pid, r.status.last_exit, r.backoff, r.status.restarts,
                    r.component.log_path,
                )  # fmt: skip
                r.backoff = min(r.backoff * 2, BACKOFF_MAX_S)
                r.proc = None
                self._remove_pidfile(name)
                changed = True
            if r.proc is None and (r.status.next_start_at or 0) <= now:
                self._start(r)
                changed = True
        if changed:
            self._write_status()

    def _start(self, r: _Running) -> None:
        c = r.component
        Path(c.log_path).parent.mkdir(parents=True, exist_ok=True)
        if c.cwd is not None:  # a workload's own directory; made (again) on each start
            Path(c.cwd).mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {**os.environ, **c.env}
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
        (self.run_dir / f"{c.name}.pid").write_text(f"{r.proc.pid}\n")
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
        r.proc = None
        r.status.pid = None
        self._remove_pidfile(r.component.name)

    def _stop_all(self) -> None:
        # agents and workloads before servers: reverse of the planned start order
        for name in sorted(self.running, key=_stop_order):
            self._stop_one(self.running[name])
        self._write_status()

    def _stop_orphans(self) -> None:
        """Children of a supervisor that died (kill -9, reboot) must not run twice.

        Only a pid recorded in our pid file whose command line still matches what we
        planned is ours; anything else with that pid is left alone.
        """
        planned = self._read_components()
        for pidfile in sorted(self.run_dir.glob("*.pid")):
            name = pidfile.stem
            if name == "supervisor" or name not in planned:
                continue
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                if process_cmdline(pid) == list(planned[name].argv):
                    log.warning(
                        "%s: stopping orphan pid %d left by a previous supervisor", name, pid
                    )
                    terminate_pid(pid, STOP_GRACE_S)
            pidfile.unlink(missing_ok=True)

    def _remove_pidfile(self, name: str) -> None:
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)

    def _write_status(self) -> None:
        data = {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "components": {name: asdict(r.status) for name, r in sorted(self.running.items())},
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.status_path)


def _stop_order(name: str) -> tuple[int, str]:
    kind = name.split(":", 1)[0]
    return ({"workload": 0, "agent": 1, "server": 2}.get(kind, 0), name)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def process_cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None (gone, zombie, or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def terminate_pid(pid: int, grace: float) -> None:
    """SIGTERM a pid we recorded, then SIGKILL after `grace` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


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
