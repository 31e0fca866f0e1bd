"""The local target through the Deployment interface: every preset, a user's own workload
and socket path, a real plan, and two `up` at once. Everything here is real SPIRE."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from spire_fabric.deploy import attach
from spire_fabric.runtime.local import state_lock
from spire_fabric.runtime.local.ports import is_listening
from spire_fabric.runtime.local.supervisor import pid_alive, process_cmdline
from spire_fabric.testing import short_tempdir
from spire_fabric.topology import (
    HealthProbe,
    LocalRun,
    Workload,
    dump_topology,
    preset,
)

from .conftest import Deploy, free_port_base

SUPERVISOR_MODULE = "spire_fabric.runtime.local.supervisor"


def supervisors_of(state_dir: Path) -> list[int]:
    """Every live supervisor process of this state directory, found through /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = process_cmdline(int(entry.name)) or []
        if SUPERVISOR_MODULE in argv and str(state_dir.resolve()) in argv:
            found.append(int(entry.name))
    return found


def assert_down_leaves_nothing(deploy: Deploy) -> None:
    d = deploy.deployment()
    pids = [s.pid for s in d.supervisor.states().values() if s.pid] + [d.supervisor.pid]
    ports = [p for _, p, _ in d._ports()]
    deploy.run("down", "--purge", check=True)
    assert not [p for p in pids if p and pid_alive(p)]
    assert not [p for p in ports if is_listening(p)]
    assert not supervisors_of(deploy.state_dir)
    assert not deploy.state_dir.exists()


@pytest.mark.parametrize("name", ["basic", "nested", "crd-free"])
def test_preset_comes_up_from_nothing_verifies_green_and_down_leaves_nothing(name: str) -> None:
    deploy = Deploy(short_tempdir(f"sf-{name}-") / "state", free_port_base())
    try:
        result = deploy.up("--topology", name)
        assert "0 failed" in result.stdout, result.stdout
        report = deploy.verify()
        assert report.ok, [f"{c.id}: {c.detail}" for c in report.failed]
        ids = {c.id for c in report.checks}
        assert "workload-health:example-app" in ids  # the preset's workload really runs
        if name == "nested":
            chain = report.get("nested-chain:spire-child-server")
            assert chain.ok and "spire-root-server's roots only" in chain.detail
    finally:
        if deploy.state_dir.exists():
            assert_down_leaves_nothing(deploy)


# ---- a user's own workload and agent socket path ------------------------------------------


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory):
    """basic + a workload of the user's (an HTTP server started from YAML) + a socket path
    of the user's choosing for the agent."""
    base = short_tempdir("sf-custom-")
    socket_path = base / "my-agent" / "workload.sock"
    t = preset("basic")
    agent = dataclasses.replace(t.agents[0], socket_path=str(socket_path))
    mine = Workload(
        name="my-app",
        spiffe_id="spiffe://example.org/my-app",
        agent=agent.name,
        selectors=("unix:uid:0",),
        x509_svid_ttl=timedelta(minutes=30),
        run=LocalRun(
            command=(sys.executable, "-m", "http.server"),
            args=("{port}", "--bind", "127.0.0.1"),
            env=("MY_APP_ID={spiffe_id}",),
            port=30500,
            health=HealthProbe("/", scheme="http"),
        ),
    )
    t = dataclasses.replace(t, agents=(agent,), workloads=(*t.workloads, mine))
    yaml_path = base / "mine.yaml"
    yaml_path.write_text(dump_topology(t))
    deploy = Deploy(base / "state", free_port_base())
    try:
        deploy.up("--topology", str(yaml_path))
        yield deploy, yaml_path, socket_path
    finally:
        if deploy.state_dir.exists():
            deploy.run("down", "--purge")


def test_users_workload_from_yaml_is_started_gets_its_svid_and_is_verified(custom) -> None:
    deploy, _, socket_path = custom
    report = deploy.verify()
    assert report.ok, [f"{c.id}: {c.detail}" for c in report.failed]
    assert report.get("workload-svid:my-app").ok
    assert report.get("workload-process:my-app").ok
    health = report.get("workload-health:my-app")
    assert health.ok and health.detail.endswith(": 200")
    # the process got its agent's socket and its own placeholders resolved
    d = deploy.deployment()
    pid = d.supervisor.states()["workload:my-app"].pid
    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        if "=" in item
    )
    assert environ["SPIFFE_ENDPOINT_SOCKET"] == f"unix://{socket_path}"
    assert environ["MY_APP_ID"] == "spiffe://example.org/my-app"


def test_agent_socket_path_is_honoured_by_config_up_verify_and_workloads(custom) -> None:
    deploy, _, socket_path = custom
    d = deploy.deployment()
    assert socket_path.is_socket()
    assert d.agent_endpoint("spire-agent") == f"unix://{socket_path}"
    config = Path(d.paths.agent_config("spire-agent")).read_text()
    assert f'socket_path = "{socket_path}"' in config
    assert deploy.verify().get("workload-svid:example-app").ok


def test_attach_by_name_reaches_the_servers_without_paths(custom, monkeypatch) -> None:
    deploy, _, _ = custom
    d = attach("basic", state_dir=deploy.state_dir)
    with d.server("spire-server") as api:
        assert str(api.get_bundle().trust_domain) == "example.org"
    address = d.workload_address("my-app")
    assert address is not None and address.host == "127.0.0.1"


def test_plan_shows_no_changes_then_exactly_one_entry_update_that_up_applies_alone(
    custom,
) -> None:
    deploy, yaml_path, _ = custom
    plan = deploy.run("plan", "--topology", str(yaml_path), "--port-base",
                      str(deploy.port_base), "--output", "json")  # fmt: skip
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert json.loads(plan.stdout)["changes"] == []

    edited = yaml_path.with_name("edited.yaml")
    edited.write_text(yaml_path.read_text().replace("x509_svid_ttl: 30m", "x509_svid_ttl: 20m"))
    plan = deploy.run("plan", "--topology", str(edited), "--port-base",
                      str(deploy.port_base), "--output", "json")  # fmt: skip
    assert plan.returncode == 2, plan.stdout + plan.stderr
    changes = json.loads(plan.stdout)["changes"]
    assert changes == [
        {
            "action": "update",
            "kind": "entry",
            "name": "spiffe://example.org/my-app",
            "detail": "on spire-server, parent spiffe://example.org/spire-fabric/agent/spire-agent",
            "fields": ["x509_svid_ttl"],
        }
    ]

    d = deploy.deployment()
    pids = {n: s.pid for n, s in d.supervisor.states().items()}
    with d.server("spire-server") as api:
        revisions = {str(e.spiffe_id): e.revision_number for e in api.list_entries()}
    result = deploy.up("--topology", str(edited))
    assert "update entry spiffe://example.org/my-app [x509_svid_ttl]" in result.stdout
    assert "0 failed" in result.stdout, result.stdout
    assert {n: s.pid for n, s in d.supervisor.states().items()} == pids  # nothing restarted
    with d.server("spire-server") as api:
        after = {str(e.spiffe_id): e.revision_number for e in api.list_entries()}
        ttl = {str(e.spiffe_id): e.x509_svid_ttl for e in api.list_entries()}
    assert after["spiffe://example.org/my-app"] == revisions["spiffe://example.org/my-app"] + 1
    others = {k: v for k, v in after.items() if k != "spiffe://example.org/my-app"}
    assert others == {k: v for k, v in revisions.items() if k != "spiffe://example.org/my-app"}
    assert ttl["spiffe://example.org/my-app"] == 20 * 60
    again = deploy.run("plan", "--topology", str(edited), "--port-base", str(deploy.port_base))
    assert again.returncode == 0 and "no changes" in again.stdout


# ---- two commands at once --------------------------------------------------------------------


def test_two_concurrent_ups_end_with_one_green_deployment_and_one_supervisor() -> None:
    deploy = Deploy(short_tempdir("sf-twice-") / "state", free_port_base())
    argv = [sys.executable, "-m", "spire_fabric.deploy", "up", "--topology", "basic",
            "--state-dir", str(deploy.state_dir), "--port-base", str(deploy.port_base)]  # fmt: skip
    deploy.state_dir.mkdir(parents=True)
    try:
        # The test holds the lock while both start, so both must wait, whatever the load;
        # released, they race for it and the loser waits for the winner's whole `up`.
        with state_lock(deploy.state_dir, "the test"):
            procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for _ in range(2)]  # fmt: skip
            time.sleep(5)
            assert [p.poll() for p in procs] == [None, None]  # both still waiting
        outputs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        for out, _ in outputs:
            assert f"waiting for pid {os.getpid()} (`the test`)" in out
        assert sum("no changes" in out for out, _ in outputs) == 1  # the second found it done
        assert len(supervisors_of(deploy.state_dir)) == 1
        assert deploy.verify().ok
    finally:
        assert_down_leaves_nothing(deploy)
