"""The test timeout of pyproject.toml stops a hung teardown (issue 26: a unit run stalled in
teardown twice and pytest-timeout did not stop it).

Each case runs pytest in a child process on a one-test file, with the project's own
``[tool.pytest.ini_options]`` and only the timeout shortened to 2 s. The fixture hangs in
teardown twice in a row, as a real cleanup does when its ``finally:`` joins the thread that
is stuck: "signal" interrupts the first wait and then has no timer left for the second.
The control case proves the scenario really defeats "signal", so the first case proves the
configured method is what stops it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 2

HANGING_TEARDOWN = """
import threading

import pytest


@pytest.fixture
def worker():
    never = threading.Event()
    stuck = threading.Thread(target=never.wait, daemon=True, name="stuck-worker")
    stuck.start()
    yield
    try:
        never.wait()  # wait for the worker to finish: it never does
    finally:
        stuck.join()  # and join it: hangs again after a signal interrupted the wait


def test_with_a_worker(worker):
    pass
"""


def _pytest(tmp_path: Path, *options: str) -> subprocess.Popen[str]:
    test_file = tmp_path / "test_hanging_teardown.py"
    test_file.write_text(HANGING_TEARDOWN)
    command = [
        sys.executable, "-m", "pytest", str(test_file),
        "-c", str(ROOT / "pyproject.toml"),  # the project's settings, not a copy of them
        "-o", f"timeout={TIMEOUT}", *options,
        "-p", "no:cacheprovider", "-q",
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_the_configured_timeout_ends_a_run_whose_teardown_hangs(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = _pytest(tmp_path)
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, output
    assert elapsed < 30, f"took {elapsed:.0f}s for a {TIMEOUT}s timeout"
    assert "+ Timeout +" in output  # the stacks were dumped, naming where it hung
    assert "in worker" in output and "stuck-worker" in output


def test_control_the_signal_method_leaves_the_same_teardown_hanging(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "-o", "timeout_method=signal")
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.communicate(timeout=4 * TIMEOUT)
    finally:
        proc.kill()  # the child we started, by its own handle
        proc.wait()
