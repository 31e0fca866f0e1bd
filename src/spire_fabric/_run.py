"""`run`: the one way spire_fabric and its tests run a command to completion.

A command that fails is reported the same way everywhere: one line naming the command, its
exit status and the last lines of what it printed (Go, debootstrap and iptables print the
reason last). The caller picks the error class, so each room keeps raising its own errors.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from spire_fabric.errors import SpireFabricError

__all__ = ["CommandError", "output_tail", "run"]


class CommandError(SpireFabricError, RuntimeError):
    """A command could not be started, timed out or exited non-zero."""


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    input: str | None = None,
    what: str | None = None,
    tail_lines: int = 12,
    error: Callable[[str], BaseException] = CommandError,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (stdin closed unless `input` is given), capturing text output.

    With `check` (the default), a non-zero exit raises `error(message)`; a command that
    cannot be started or outlives `timeout` raises it whatever `check` says. The message
    starts with `what` (default: the first three words of the command).
    """
    name = what or " ".join(argv[:3])
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{name}: {exc}") from exc
    if check and proc.returncode != 0:
        tail = output_tail(proc.stderr or proc.stdout, tail_lines)
        raise error(f"{name}: exit {proc.returncode}: {tail}")
    return proc


def output_tail(text: str, lines: int = 12) -> str:
    """The last non-blank `lines` of `text` on one line, `|`-separated."""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"
