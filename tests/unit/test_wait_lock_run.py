"""The shared helpers every wait, lock and command of spire_fabric goes through."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from spire_fabric._filelock import FileLockBusy, file_lock
from spire_fabric._run import CommandError, run
from spire_fabric._wait import WaitTimeout, wait_until
from spire_fabric.errors import SpireFabricError


def test_wait_until_returns_the_first_truthy_probe_result() -> None:
    answers = iter([None, 0, "", {"ready": True}])
    assert wait_until(lambda: next(answers), 5, "ready", interval=0.01) == {"ready": True}


def test_wait_until_times_out_naming_what_and_the_last_probe_result() -> None:
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"pods ready: not true after 0.3 s "
                                          r"\(last probe: \{'ready': 1, 'want': 3\}\)"):
        wait_until(lambda: _Falsy({"ready": 1, "want": 3}), 0.3, "pods ready", interval=0.05)
    assert 0.3 <= time.monotonic() - t0 < 2
    assert issubclass(WaitTimeout, SpireFabricError) and issubclass(WaitTimeout, TimeoutError)


class _Falsy(dict[str, int]):
    """A probe result that is not yet good enough but says why."""

    def __bool__(self) -> bool:
        return False


def test_a_raising_probe_is_not_yet_and_its_error_is_reported() -> None:
    def probe() -> bool:
        raise ConnectionRefusedError("127.0.0.1:8081")

    with pytest.raises(WaitTimeout, match=r"server healthy: .*last probe: "
                                          r"ConnectionRefusedError: 127.0.0.1:8081"):
        wait_until(probe, 0.2, "server healthy", interval=0.05)


def test_abort_stops_the_wait_at_once_with_its_reason() -> None:
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"etcd: the process exited \(last probe: False\)"):
        wait_until(lambda: False, 30, "etcd", abort=lambda: "the process exited",
                   error=RuntimeError)
    assert time.monotonic() - t0 < 1


def test_exceptions_outside_retry_on_are_not_swallowed() -> None:
    def probe() -> bool:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        wait_until(probe, 5, "x", retry_on=(OSError,))


def test_a_held_lock_refuses_a_non_blocking_taker_naming_the_file(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / ".state.lock"
    with file_lock(lock), pytest.raises(FileLockBusy, match=str(lock)), file_lock(
            lock, blocking=False):
        pass
    with file_lock(lock, blocking=False):  # released: free again
        pass


def test_a_blocking_taker_says_it_waits_then_gets_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / ".cache.lock"
    held = threading.Event()
    order: list[str] = []

    def holder() -> None:
        with file_lock(lock):
            held.set()
            time.sleep(0.3)
            order.append("holder done")

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    told: list[str] = []
    with file_lock(lock, on_wait=told.append):
        order.append("taker in")
    thread.join()
    assert order == ["holder done", "taker in"]
    assert told == [f"waiting for another process holding {lock}"]


def test_a_failing_command_names_itself_its_exit_and_the_end_of_its_output() -> None:
    script = "import sys\nfor i in range(20): print(f'line {i}', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(CommandError) as err:
        run([sys.executable, "-c", script], what="build thing", tail_lines=2)
    assert str(err.value) == "build thing: exit 3: line 18 | line 19"


def test_run_without_check_returns_the_result_and_with_it_uses_the_callers_error() -> None:
    proc = run([sys.executable, "-c", "print('out'); raise SystemExit(1)"], check=False)
    assert (proc.returncode, proc.stdout) == (1, "out\n")
    with pytest.raises(ValueError, match="exit 1: out"):
        run([sys.executable, "-c", "print('out'); raise SystemExit(1)"], error=ValueError)


def test_a_command_that_cannot_start_or_hangs_is_an_error_even_unchecked(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no-such-program-here"):
        run([str(tmp_path / "no-such-program-here")], check=False)
    with pytest.raises(CommandError, match="timed out"):
        run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3, check=False)
