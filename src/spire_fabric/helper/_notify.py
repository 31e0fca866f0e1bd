"""Tell the program that its SVID files changed: a signal to a pid, or a command.

A signal is how nginx, HAProxy and most daemons reload certificates without a restart
(nginx: SIGHUP re-reads the configuration and the files it names, and keeps its pid). A
pid file is read again on every notification, because the program may have restarted
since. A program that is not running yet is not an error: it will read the current files
when it starts. A command runs without a shell, with a bounded time.
"""

from __future__ import annotations

import logging
import os
import subprocess

from ._config import HelperConfig

__all__ = ["COMMAND_TIMEOUT_S", "Notified", "notify"]

logger = logging.getLogger("spire_fabric.helper")
COMMAND_TIMEOUT_S = 60.0


class Notified(str):
    """The line saying what was done, and how many signals were delivered (the helper's
    ``reload_signals`` metric counts them; a pid that was not there is no delivery)."""

    signals: int

    def __new__(cls, line: str, signals: int = 0) -> Notified:
        self = super().__new__(cls, line)
        self.signals = signals
        return self


def _target_pid(config: HelperConfig) -> int | None:
    if config.pid is not None:
        return config.pid
    assert config.pid_file is not None
    try:
        text = config.pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        pid = int(text.split()[0]) if text else 0
    except ValueError:
        pid = 0
    if pid <= 1:
        logger.warning("helper: %s holds %r, not a pid; nothing signalled", config.pid_file,
                       text[:40])
        return None
    return pid


def notify(config: HelperConfig) -> Notified:
    """Send the configured signal and/or run the command; return what was done (a line)."""
    done: list[str] = []
    signals = 0
    if config.signal is not None:
        pid = _target_pid(config)
        if pid is None:
            done.append(f"no process to send {config.signal.name} yet")
        else:
            try:
                os.kill(pid, config.signal)
                signals += 1
                done.append(f"sent {config.signal.name} to pid {pid}")
            except ProcessLookupError:
                done.append(f"pid {pid} is not running; {config.signal.name} not sent")
            except PermissionError:
                done.append(f"not permitted to signal pid {pid}")
    if config.command:
        try:
            proc = subprocess.run(list(config.command), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                                  check=False)  # fmt: skip
            done.append(f"ran {config.command[0]} (exit {proc.returncode})")
            if proc.returncode != 0:
                logger.warning("helper: %s exited %d: %.300s", config.command[0],
                               proc.returncode, (proc.stderr or proc.stdout).strip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            done.append(f"could not run {config.command[0]}: {exc}")
    return Notified("; ".join(done), signals)
