"""How the benchmarks start ``python -m spire_fabric...``: as an installed package runs.

pip compiles a package's modules to bytecode when it installs it, so a user's process
loads ours (about 300 modules for `deploy plan`) from cached bytecode. A source checkout
run with PYTHONDONTWRITEBYTECODE=1, as this machine's shells are, compiles every one of
them again in every process: about 0.5 s of CPU that no user pays, and that a benchmark
of start-up must not count. So the timed processes may write and read the bytecode cache
(``__pycache__``, ignored by git), and :func:`compile_package` fills it before timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import spire_fabric

PACKAGE_DIR = Path(spire_fabric.__file__).resolve().parent


def python_env() -> dict[str, str]:
    """The environment of a timed ``python -m spire_fabric...`` process."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_package() -> None:
    """Compile spire_fabric's modules to bytecode, as ``pip install`` does (untimed)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(PACKAGE_DIR)],
        env=python_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
