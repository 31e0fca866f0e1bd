"""The local supervisor restarts what crashes, says why, and stops exactly what it started.

Components here are tiny Python sleepers: this tests process supervision, not SPIRE.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from spire_fabric.runtime.local._procfs import (
    COMPONENT_ENV,
    STATE_DIR_ENV,
    deployment_processes,
    process_environ,
    process_start_time,
)
from spire_fabric.runtime.local._supervisor_client import SupervisorClient
from spire_fabric.runtime.local.supervisor import Component, ProcessRecord, pid_alive

SLEEPER = "import time\nwhile True: time.sleep(1)"


def sleeper(state: Path, name: str, tag: str = "") -> Component:
    return Component(
        name=name,
        argv=(sys.executable, "-c", SLEEPER, tag or name),
        log_path=str(state / "logs" / f"{name.replace(':', '-')}.log"),
    )


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def client(tmp_path):
    c = SupervisorClient(tmp_path)
    yield c
    c.stop()


def test_supervisor_starts_planned_components_and_survives_the_caller(client, tmp_path) -> None:
    client.set_components([sleeper(tmp_path, "server:a"), sleeper(tmp_path, "agent:b")])
    supervisor_pid = client.ensure_running()
    states = wait_for(lambda: (s := client.states()) and all(x.running for x in s.values()) and s)
    assert set(states) == {"server:a", "agent:b"}
    assert os.getsid(supervisor_pid) == supervisor_pid  # own session: outlives the CLI


def test_crashed_component_is_restarted_and_the_reason_is_recorded(client, tmp_path) -> None:
    client.set_components([sleeper(tmp_path, "agent:x")])
    client.ensure_running()
    first = wait_for(lambda: client.states()["agent:x"].pid)
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (p := client.states()["agent:x"].pid) and p != first and p)
    state = client.states()["agent:x"]
    assert second != first and state.restarts == 1
    assert state.last_exit == "was killed by SIGKILL"
    log = client.log_path.read_text()
    assert "agent:x" in log and "SIGKILL" in log and "restarting in" in log


def test_changed_plan_is_applied_on_reload(client, tmp_path) -> None:
    client.set_components([sleeper(tmp_path, "server:a"), sleeper(tmp_path, "agent:b")])
    client.ensure_running()
    old_b = wait_for(lambda: client.states().get("agent:b") and client.states()["agent:b"].pid)
    a_pid = wait_for(lambda: client.states()["server:a"].pid)
    client.set_components([sleeper(tmp_path, "server:a"), sleeper(tmp_path, "agent:b", "v2")])
    wait_for(lambda: (p := client.states()["agent:b"].pid) and p != old_b)
    assert client.states()["server:a"].pid == a_pid  # unchanged component kept running
    assert not pid_alive(old_b)
    client.set_components([sleeper(tmp_path, "server:a")])
    wait_for(lambda: "agent:b" not in client.states())


def test_stop_ends_the_supervisor_and_every_child_and_nothing_else(client, tmp_path) -> None:
    bystander = sleeper(tmp_path, "bystander")
    import subprocess

    other = subprocess.Popen(list(bystander.argv))  # same command line, not ours
    try:
        client.set_components([sleeper(tmp_path, "server:a"), sleeper(tmp_path, "bystander")])
        supervisor_pid = client.ensure_running()
        children = wait_for(lambda: (s := client.states()) and all(x.pid for x in s.values()) and s)
        stopped = client.stop()
        assert supervisor_pid in stopped
        assert not pid_alive(supervisor_pid)
        for state in children.values():
            assert not pid_alive(state.pid)
        assert other.poll() is None, "a process with the same name was killed"
        assert not list((tmp_path / "run").glob("*.pid"))
    finally:
        other.kill()
        other.wait()


def kill_supervisor(client: SupervisorClient) -> None:
    """A crash of the supervisor alone (kill -9): its children live on."""
    supervisor_pid = client.pid
    assert supervisor_pid is not None
    os.kill(supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(supervisor_pid))


def test_a_new_supervisor_adopts_healthy_orphans_whose_command_is_unchanged(
    client, tmp_path
) -> None:
    client.set_components([sleeper(tmp_path, "agent:orphan"), sleeper(tmp_path, "server:s")])
    client.ensure_running()
    before = wait_for(lambda: (s := client.states()) and all(x.pid for x in s.values()) and s)
    kill_supervisor(client)
    assert all(pid_alive(s.pid) for s in before.values())
    client.ensure_running()
    time.sleep(1.0)  # several ticks of the new supervisor
    after = client.states()
    assert {n: s.pid for n, s in after.items()} == {n: s.pid for n, s in before.items()}
    assert all(pid_alive(s.pid) for s in after.values())
    assert "adopted pid" in client.log_path.read_text()
    # adopted means supervised: a crash of an adopted process is still restarted
    os.kill(after["agent:orphan"].pid, signal.SIGKILL)
    fresh = wait_for(
        lambda: (p := client.states()["agent:orphan"].pid) and p != after["agent:orphan"].pid
        and p
    )
    assert pid_alive(fresh) and client.states()["agent:orphan"].restarts == 1


def test_a_new_supervisor_replaces_orphans_whose_command_changed(client, tmp_path) -> None:
    client.set_components([sleeper(tmp_path, "agent:orphan"), sleeper(tmp_path, "server:s")])
    client.ensure_running()
    old = wait_for(lambda: (s := client.states()) and all(x.pid for x in s.values()) and s)
    kill_supervisor(client)
    client.set_components([sleeper(tmp_path, "agent:orphan", "v2"), sleeper(tmp_path, "server:s")])
    # the orphan with the old command is still found: by its record, not by its argv
    assert client.states()["agent:orphan"].pid == old["agent:orphan"].pid
    client.ensure_running()
    fresh = wait_for(
        lambda: (p := client.states()["agent:orphan"].pid) and p != old["agent:orphan"].pid
        and p
    )
    assert not pid_alive(old["agent:orphan"].pid) and pid_alive(fresh)
    assert client.states()["server:s"].pid == old["server:s"].pid  # unchanged: adopted


def test_down_finds_orphans_by_record_and_marker_not_by_argv(client, tmp_path) -> None:
    client.set_components([sleeper(tmp_path, "workload:w"), sleeper(tmp_path, "agent:a")])
    client.ensure_running()
    old = wait_for(lambda: (s := client.states()) and all(x.pid for x in s.values()) and s)
    kill_supervisor(client)
    # settings changed (new ports: new argv) and one pid file was lost on the way
    client.set_components([sleeper(tmp_path, "workload:w", "v2"), sleeper(tmp_path, "agent:a")])
    (tmp_path / "run" / "agent:a.pid").unlink()
    stopped = client.stop()
    assert {s.pid for s in old.values()} <= set(stopped)
    assert not any(pid_alive(s.pid) for s in old.values())


def test_a_reused_pid_is_not_taken_for_ours(client, tmp_path) -> None:
    """A pid file that names a live process of someone else (pid reuse after a reboot) is
    neither adopted nor killed, even when its command line is exactly the planned one."""
    import subprocess

    component = sleeper(tmp_path, "agent:a")
    stranger = subprocess.Popen(list(component.argv))  # same argv, not started by us
    try:
        run = tmp_path / "run"
        run.mkdir(parents=True, exist_ok=True)
        forged = ProcessRecord(stranger.pid, process_start_time(stranger.pid), time.time(),
                               component)  # fmt: skip
        (run / "agent:a.pid").write_text(forged.to_text())
        client.set_components([component])
        assert client.states()["agent:a"].pid is None  # no marker of this state dir
        client.ensure_running()
        ours = wait_for(lambda: client.states()["agent:a"].pid)
        assert ours != stranger.pid
        client.stop()
        assert stranger.poll() is None, "a process that is not ours was stopped"
    finally:
        stranger.kill()
        stranger.wait()


def test_components_carry_the_deployment_marker(client, tmp_path) -> None:
    client.set_components([sleeper(tmp_path, "agent:m")])
    client.ensure_running()
    pid = wait_for(lambda: client.states()["agent:m"].pid)
    env = process_environ(pid)
    assert env is not None
    assert env[STATE_DIR_ENV] == str(tmp_path.resolve()) and env[COMPONENT_ENV] == "agent:m"
    assert deployment_processes(tmp_path.resolve()) == {pid: "agent:m"}


def test_a_second_supervisor_for_the_same_state_dir_exits_and_the_first_stays(
    client, tmp_path
) -> None:
    import subprocess

    client.set_components([sleeper(tmp_path, "agent:only")])
    first = client.ensure_running()
    wait_for(lambda: client.states()["agent:only"].running)
    child = client.states()["agent:only"].pid
    second = subprocess.run(
        [sys.executable, "-m", "spire_fabric.runtime.local.supervisor",
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert second.returncode == 0
    assert "another supervisor already runs" in second.stdout
    assert client.pid == first and pid_alive(first)
    assert client.states()["agent:only"].pid == child  # nothing was started twice
