"""Day-2 operations of the local target on a real enterprise deployment (issue 26).

- a lost supervisor (kill -9) is replaced by `up` without restarting anything healthy, and
  the security gateway keeps answering every request meanwhile;
- a config-changing `up` (a new --port-base) writes every config before it restarts
  anything, so no agent starts with the old server port and crashes ~40 s later;
- `plan` names the config keys such an `up` would change;
- join tokens never appear on a command line;
- `down` stops every process of the deployment, found by record and state directory,
  even orphans whose command changed under them.

Tests run in file order on one deployment; each leaves it healthy (or says so).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spire_fabric.runtime.local._procfs import deployment_processes, process_cmdline
from spire_fabric.runtime.local.ports import find_port_owner, is_listening
from spire_fabric.runtime.local.processes import join_token_file
from spire_fabric.runtime.local.supervisor import pid_alive
from spire_fabric.testing import short_tempdir

from .conftest import Deploy, free_port_base

GATEWAY_DNS = "security-gateway.downstream-workloads.svc"  # first DNS SAN of its entry


@dataclass
class Traffic:
    """Requests to the security gateway, one connection each, in a thread, until stopped:
    GET /records with an API key, through the gateway to enterprise-api and back."""

    port: int
    anchor: Path
    key: str
    results: list[tuple[float, str]] = field(default_factory=list)  # (when, "" or error)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _one(self, context: ssl.SSLContext) -> str:
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            conn = http.client.HTTPSConnection(GATEWAY_DNS, self.port, timeout=5)
            conn.sock = context.wrap_socket(raw, server_hostname=GATEWAY_DNS)
            try:
                conn.request("GET", "/records", headers={"Authorization": f"Bearer {self.key}"})
                answer = conn.getresponse()
                body = answer.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as err:
            return f"{type(err).__name__}: {err}"
        return "" if answer.status == 200 else f"HTTP {answer.status}: {body[:200]!r}"

    def _run(self) -> None:
        context = ssl.create_default_context(cafile=str(self.anchor))
        while not self._stop.is_set():
            self.results.append((time.monotonic(), self._one(context)))
            time.sleep(0.005)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    @property
    def failed(self) -> list[str]:
        return [err for _, err in self.results if err]


@dataclass
class Day2:
    deploy: Deploy
    anchor: Path
    key: str

    @property
    def gateway_port(self) -> int:
        return self.deploy.port_base - 31000 + 30080

    def traffic(self) -> Traffic:
        return Traffic(self.gateway_port, self.anchor, self.key)

    def pids(self) -> dict[str, int | None]:
        return {n: s.pid for n, s in self.deploy.deployment().supervisor.states().items()}

    def plan(self, *extra: str) -> dict:
        result = self.deploy.run("plan", "--port-base", str(self.deploy.port_base), *extra,
                                 "--output", "json")  # fmt: skip
        assert result.returncode in (0, 2), result.stdout + result.stderr
        return json.loads(result.stdout)


def _issue_key(deploy: Deploy) -> str:
    keys = deploy.state_dir / "workloads" / "security-gateway" / "api-keys.json"
    argv = [sys.executable, "-m", "spire_fabric.examples.security_gateway", "issue-key",
            "--api-keys", str(keys), "--client", "day2", "--rate", "10000", "--burst", "10000",
            "--route", "GET /records"]  # fmt: skip
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def day2() -> Iterator[Day2]:
    deploy = Deploy(short_tempdir("sf-day2-") / "state", free_port_base())
    try:
        deploy.up("--no-verify")
        anchor = deploy.state_dir.parent / "anchor.pem"
        deploy.run("trust-anchor", "-o", str(anchor), check=True)
        yield Day2(deploy, anchor, _issue_key(deploy))
    finally:
        deploy.run("down", "--purge")
        shutil.rmtree(deploy.state_dir.parent, ignore_errors=True)


def _ours_listening(state_dir: Path, ports: list[int]) -> list[int]:
    """Those of ``ports`` a process of this deployment listens on (another test's
    deployment may take a port we left: its owner is named, and not ours)."""
    ours = deployment_processes(state_dir)
    listening = [p for p in ports if is_listening(p)]
    return [p for p in listening if (owner := find_port_owner(p)[0]) is None or owner in ours]


def _wait_traffic_ok(day2: Day2, timeout: float = 60) -> None:
    """Requests succeed (the gateway's key store is read, its SVIDs are there)."""
    deadline = time.monotonic() + timeout
    with day2.traffic() as traffic:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if traffic.results and not traffic.results[-1][1]:
                return
    raise AssertionError(f"the gateway does not answer: {traffic.failed[-3:]}")


def test_join_tokens_are_in_0600_files_and_on_no_command_line(day2: Day2) -> None:
    d = day2.deploy.deployment()
    tokens = d.record.join_tokens
    assert tokens and set(tokens) == {a.name for a in d.topology.agents}
    processes = deployment_processes(d.state.path)
    agents = [p for p, name in processes.items() if name.startswith("agent:")]
    assert len(agents) == len(tokens)  # the check below really looked at the agents
    for pid in processes:
        cmdline = " ".join(process_cmdline(pid) or [])
        assert not [t for t in tokens.values() if t in cmdline], cmdline
        assert "-joinToken " not in cmdline + " "
    for name, token in tokens.items():
        path = join_token_file(d.ctx, name)
        assert path.read_text().strip() == token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_lost_supervisor_up_restarts_nothing_healthy_and_no_request_fails(day2: Day2) -> None:
    _wait_traffic_ok(day2)
    d = day2.deploy.deployment()
    before = day2.pids()
    assert before and all(before.values()), before
    supervisor = d.supervisor.pid
    assert supervisor is not None
    with day2.traffic() as traffic:
        time.sleep(1)
        os.kill(supervisor, signal.SIGKILL)
        while pid_alive(supervisor):
            time.sleep(0.05)
        plan = day2.plan()
        started = time.monotonic()
        day2.deploy.up("--no-verify")
        up_s = time.monotonic() - started
        time.sleep(2)  # a restart the new supervisor did would show up by now
    changes = [(c["action"], c["kind"], c["name"]) for c in plan["changes"]]
    assert changes == [("start", "process", "supervisor")], plan
    assert day2.pids() == before  # adopted, not restarted
    assert d.supervisor.pid not in (None, supervisor)
    print(f"\nkill -9 supervisor + up: {len(traffic.results)} requests, "
          f"{len(traffic.failed)} failed, up took {up_s:.1f}s")  # fmt: skip
    assert len(traffic.results) >= 20, "too few requests to prove anything"
    assert not traffic.failed, traffic.failed[:5]
    assert "adopted pid" in d.supervisor.log_path.read_text()


def test_plan_of_a_port_base_change_names_the_changed_config_keys(day2: Day2) -> None:
    new_base = free_port_base()
    result = day2.deploy.run("plan", "--port-base", str(new_base), "--output", "json")
    assert result.returncode == 2, result.stdout + result.stderr
    configs = {c["name"]: c for c in json.loads(result.stdout)["changes"] if c["kind"] == "config"}
    assert configs, result.stdout
    for change in configs.values():
        assert change["action"] == "update" and change["fields"], change
    assert "agent.server_port" in configs["agents/downstream-agent-1/agent.conf"]["fields"]
    assert "server.bind_port" in configs["servers/spire-downstream-server/server.conf"]["fields"]


def test_port_base_change_writes_configs_before_restarting_agents(day2: Day2) -> None:
    d = day2.deploy.deployment()
    old_ports = [p for _, p, _ in d._ports()]
    day2.deploy.port_base = free_port_base()
    started = time.monotonic()
    day2.deploy.up("--no-verify")
    up_s = time.monotonic() - started
    print(f"\nup --port-base {day2.deploy.port_base} on a running deployment: {up_s:.1f}s")
    d = day2.deploy.deployment()
    states = d.supervisor.states()
    # no process crashed on the way (an agent started with the old agent.conf would have)
    assert all(s.running and s.restarts == 0 for s in states.values()), states
    for a in d.topology.agents:
        assert d.agent_healthy(a.name), a.name
    assert up_s < 30, f"the port change took {up_s:.0f}s (an agent waited for a restart?)"
    assert not _ours_listening(d.state.path, old_ports), "something still serves old ports"
    _wait_traffic_ok(day2)


def test_down_after_a_settings_change_under_a_dead_supervisor_leaves_no_process(
    day2: Day2,
) -> None:
    d = day2.deploy.deployment()
    state_dir = d.state.path
    old = deployment_processes(state_dir)
    assert set(old.values()) == {c.name for c in d.supervisor.planned()}, old
    old_workload_ports = [p.port for p in d.workload_processes() if p.port is not None]
    supervisor = d.supervisor.pid
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    while pid_alive(supervisor):
        time.sleep(0.05)
    # a settings change while no supervisor runs: every workload's command changes
    day2.deploy.port_base = free_port_base()
    day2.deploy.up("--no-verify")
    assert not _ours_listening(state_dir, old_workload_ports), "old workloads still serve"
    assert not [p for p, name in old.items() if name.startswith("workload:") and pid_alive(p)]
    result = day2.deploy.run("down", check=True)
    assert "stopped" in result.stdout
    assert deployment_processes(state_dir) == {}
    assert not [p for p in old if pid_alive(p)]
