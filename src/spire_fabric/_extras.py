"""The optional parts and the extras that bring them, named once.

Why extras: ``pip install spire-fabric`` is the SDK (identity, workload, tls, federation,
server, agent, entries, topology, render), and a workload that only needs an SVID should not
install the Kubernetes client or a terminal renderer. The commands that need more say so in
one line, naming the ``pip install`` to run, instead of a traceback (as httpx does for
``httpx[cli]``). pyproject.toml's ``[project.optional-dependencies]`` must bring at least
the modules listed here; tests/unit/test_extras.py checks that it does.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["EXTRAS", "missing_modules", "require_extra", "require_extra_or_exit"]

# extra -> the top-level modules it brings that our code imports
EXTRAS: dict[str, tuple[str, ...]] = {
    # the terminal output of the commands (`python -m spire_fabric.entries`)
    "cli": ("rich",),
    # `python -m spire_fabric.deploy`: the installer, its Kubernetes target included
    "deploy": ("rich", "kubernetes"),
    # `python -m spire_fabric.dashboard`, which reaches deployments through the installer
    "dashboard": ("rich", "kubernetes", "starlette", "uvicorn", "jinja2"),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def _hint(what: str, extra: str, missing: list[str]) -> str:
    return (
        f"{what} needs the '{extra}' extra ({', '.join(missing)} not installed): "
        f"pip install 'spire-fabric[{extra}]'"
    )


def require_extra(extra: str, what: str) -> None:
    """Raise ModuleNotFoundError naming the ``pip install`` to run if ``extra`` is not
    installed (for code that imports an optional part)."""
    missing = missing_modules(extra)
    if missing:
        raise ModuleNotFoundError(_hint(what, extra, missing), name=missing[0])


def require_extra_or_exit(extra: str, command: str) -> None:
    """For a ``python -m`` entry point: if ``extra`` is not installed, print one line on
    stderr naming the ``pip install`` to run and exit with status 2 (a usage error)."""
    missing = missing_modules(extra)
    if missing:
        print(_hint(command, extra, missing), file=sys.stderr)
        raise SystemExit(2)
