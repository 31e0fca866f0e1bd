"""Bad input to `deploy up`: one clear message, a non-zero exit, and nothing changed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from spire_fabric.testing import short_tempdir

from .conftest import Deploy, free_port_base


def deploy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spire_fabric.deploy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def snapshot(path: Path) -> dict[str, float]:
    """Every file the installer writes, by mtime. logs/ is left out: the running processes
    append to their logs on their own (a server still starting did, 1 s late, under load)."""
    logs = path / "logs"
    return {str(p): p.stat().st_mtime for p in path.rglob("*")
            if p.is_file() and logs not in p.parents}  # fmt: skip


def test_unknown_preset_is_named_and_nothing_is_created(tmp_path) -> None:
    state = tmp_path / "state"
    result = deploy("up", "--topology", "enterprize", "--state-dir", str(state))
    assert result.returncode == 2
    assert "enterprize" in result.stderr and "not a preset" in result.stderr
    assert not state.exists()


def test_topology_yaml_error_names_the_field_and_nothing_is_created(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: broken\ntrust_domains:\n- name: Example.ORG\nservers: []\nagents: []\n"
        "workloads: []\n"
    )
    state = tmp_path / "state"
    result = deploy("up", "--topology", str(bad), "--state-dir", str(state))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "trust_domains" in result.stderr and "Example.ORG" in result.stderr
    assert not state.exists()


def test_taken_port_names_port_and_owner_and_nothing_is_created() -> None:
    base = free_port_base()
    state = short_tempdir("sf-bad-port-") / "state"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 81))  # the upstream server's API port
        squatter.listen()
        result = deploy("up", "--state-dir", str(state), "--port-base", str(base))
    assert result.returncode == 1, result.stdout
    assert f"port {base + 81}" in result.stdout and f"pid {os.getpid()}" in result.stdout
    assert not state.exists()


def test_missing_spire_with_no_way_to_get_it_says_what_was_tried(tmp_path) -> None:
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "empty-cache"),
        "PATH": "/usr/bin:/bin",  # no spire-*, no go
        "SPIRE_FABRIC_RELEASE_URL": "http://127.0.0.1:9/releases",  # nothing listens
    }
    env.pop("SPIRE_FABRIC_BIN_DIR", None)
    assert subprocess.run(["sh", "-c", "command -v go"], env=env).returncode != 0
    state = tmp_path / "state"
    result = deploy("up", "--state-dir", str(state), env=env)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    for step in ("PATH", "cache", "download", "go build"):
        assert step in out, step
    assert not state.exists()


def test_state_dir_of_another_topology_is_refused_and_left_as_it_was() -> None:
    other = Deploy(short_tempdir("sf-bad-state-") / "state", free_port_base())
    other.run("up", "--topology", "basic", "--port-base", str(other.port_base), "--no-verify",
              check=True)  # fmt: skip
    try:
        before = snapshot(other.state_dir)
        pids = {n: s.pid for n, s in other.deployment().supervisor.states().items()}
        result = deploy("up", "--topology", "enterprise", "--state-dir", str(other.state_dir))
        assert result.returncode == 2
        assert "belongs to topology 'basic'" in result.stderr
        assert snapshot(other.state_dir) == before
        assert {n: s.pid for n, s in other.deployment().supervisor.states().items()} == pids
    finally:
        other.run("down", "--purge")


@pytest.mark.parametrize("command", ["plan", "up", "status", "down"])
def test_state_dir_that_is_a_file_is_named_and_the_file_is_left_alone(tmp_path, command) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory\n")
    result = deploy(command, "--state-dir", str(state))
    # plan's exit 2 means "would change", so its bad input is 1 (like every other error)
    assert result.returncode == (1 if command == "plan" else 2), result.stderr
    assert f"--state-dir {state}: not a directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert state.read_text() == "not a directory\n"
