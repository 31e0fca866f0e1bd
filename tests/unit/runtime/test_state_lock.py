"""The state directory's lock: one command at a time, the second told who holds it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from spire_fabric.runtime.local import StateError, state_lock


def test_a_second_command_waits_then_names_the_holder(tmp_path):
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import pathlib, time
        from spire_fabric.runtime.local import state_lock
        with state_lock(pathlib.Path({str(tmp_path / 's')!r}), "up"):
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(30)
    """)])  # fmt: skip
    try:
        while not ready.exists():
            assert holder.poll() is None
        told: list[str] = []
        with (
            pytest.raises(StateError, match=rf"locked by pid {holder.pid} \(`up`\)"),
            state_lock(tmp_path / "s", "down", timeout=0.5, waiting=told.append),
        ):
            pass
        assert told == [f"waiting for pid {holder.pid} (`up`), which holds the lock on "
                        f"{tmp_path / 's'}"]  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: the kernel dropped its lock
    with state_lock(tmp_path / "s", "down", timeout=1):
        mine = f'{{"pid": {os.getpid()}, "command": "down"}}'
        assert (tmp_path / "s" / "lock").read_text() == mine


def test_a_directory_made_only_for_the_lock_is_removed_again(tmp_path):
    with state_lock(tmp_path / "new", "up"):
        pass
    assert not (tmp_path / "new").exists()
