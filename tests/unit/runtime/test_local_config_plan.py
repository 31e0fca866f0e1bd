"""`plan` names the keys a config update changes; join tokens stay off command lines.

No SPIRE runs here: these check what the local target renders, writes and plans (the
binaries' paths only appear in command lines). The same behaviour against real SPIRE
processes is in tests/e2e/test_local_day2.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from spire_fabric.render._hcl import HclWriter
from spire_fabric.runtime.binaries import SpireBinaries
from spire_fabric.runtime.local._config_keys import changed_keys, config_keys
from spire_fabric.runtime.local.context import LocalContext
from spire_fabric.runtime.local.planning import compute_plan
from spire_fabric.runtime.local.processes import (
    agent_components,
    agent_config,
    desired_components,
    join_token_file,
    publish,
    server_config,
    write_configs,
)
from spire_fabric.runtime.local.state import DeploymentRecord, StateDir
from spire_fabric.topology import Topology, preset

TOKEN = "7f1c2b0e-5d4a-4e7b-9c1d-2a3b4c5d6e7f"


def context(state_dir: Path, port_base: int) -> LocalContext:
    topology = preset("enterprise")
    record = DeploymentRecord(topology=topology.name, port_base=port_base)
    record.join_tokens = {a.name: f"{TOKEN}-{a.name}" for a in topology.agents}
    binaries = SpireBinaries(Path("/opt/spire/spire-server"), Path("/opt/spire/spire-agent"),
                             "1.13.3", "test")  # fmt: skip
    return LocalContext(StateDir(state_dir), record, topology, binaries)


def written(state_dir: Path, port_base: int) -> LocalContext:
    """A deployment whose files were written by an `up` at ``port_base``."""
    ctx = context(state_dir, port_base)
    ctx.state.save(ctx.record, ctx.topology)
    write_configs(ctx, [s.name for s in ctx.local.servers], [a.name for a in ctx.local.agents])
    return ctx


def test_config_keys_are_dotted_paths_of_blocks_labels_and_keys() -> None:
    w = HclWriter()
    w.comment("header")
    with w.block("agent"):
        w.attr("server_port", 8081)
        with w.block("experimental"):
            w.attr("sync_interval", "1s")
    with w.block("plugins"):
        with w.block("KeyManager", "disk"), w.block("plugin_data"):
            w.attr("directory", "/d")
        w.empty_block("NodeAttestor", "join_token")
        with w.block("X", "a"):
            w.attr("m", {"k": "v", "dotted.key": ["a", "b"]})
    assert config_keys(w.text()) == {
        "agent.server_port": "8081",
        "agent.experimental.sync_interval": '"1s"',
        "plugins.KeyManager.disk.plugin_data.directory": '"/d"',
        "plugins.NodeAttestor.join_token": "{}",
        "plugins.X.a.m.k": '"v"',
        "plugins.X.a.m.dotted.key": '["a", "b"]',
    }


def test_changed_keys_lists_added_removed_and_changed_keys_only() -> None:
    old = 'a {\n  x = 1\n  y = "same"\n  gone = true\n}\n'
    new = '# a new comment\na {\n  x = 2\n  y = "same"\n  b "l" {}\n}\n'
    assert changed_keys(old, new) == ("a.b.l", "a.gone", "a.x")
    assert changed_keys(old, "# only a comment\n" + old) == ()


def test_a_line_it_cannot_read_still_counts_as_a_change() -> None:
    assert changed_keys("a {\n  x = 1\n}\n", "a {\n  x = 1\n  hand edited\n}\n") == (
        "a.hand edited",
    )


def test_plan_after_a_port_base_change_names_the_changed_keys(tmp_path: Path) -> None:
    written(tmp_path / "state", 43000)
    plan = compute_plan(context(tmp_path / "state", 44000))
    configs = {c.name: c for c in plan.changes if c.kind == "config"}
    agent = configs["agents/upstream-agent/agent.conf"]
    assert agent.action == "update"
    assert agent.fields == ("agent.server_port", "health_checks.bind_port",
                            "telemetry.Prometheus.port")  # fmt: skip
    server = configs["servers/spire-upstream-server/server.conf"]
    assert {"server.bind_port", "server.federation.bundle_endpoint.port",
            "health_checks.bind_port"} <= set(server.fields)  # fmt: skip
    assert "agent.server_port" in agent.describe()
    assert all(c.fields for c in configs.values()), [c for c in configs.values() if not c.fields]


def test_plan_of_unchanged_configs_has_no_config_change(tmp_path: Path) -> None:
    written(tmp_path / "state", 43000)
    plan = compute_plan(context(tmp_path / "state", 43000))
    assert not [c for c in plan.changes if c.kind == "config"]


def test_plan_of_a_changed_ttl_names_the_ttl_key(tmp_path: Path) -> None:
    import dataclasses
    from datetime import timedelta

    ctx = written(tmp_path / "state", 43000)
    server = ctx.topology.servers[0]
    changed = dataclasses.replace(server, default_x509_svid_ttl=timedelta(hours=2))
    topology = dataclasses.replace(
        ctx.topology, servers=(changed, *ctx.topology.servers[1:])
    )
    new = LocalContext(ctx.state, ctx.record, topology, ctx.binaries_)
    configs = {c.name: c for c in compute_plan(new).changes if c.kind == "config"}
    assert configs[f"servers/{server.name}/server.conf"].fields == ("server.default_x509_svid_ttl",)


def test_join_token_is_in_a_0600_file_and_never_in_argv(tmp_path: Path) -> None:
    ctx = written(tmp_path / "state", 43000)
    for comp in agent_components(ctx, [a.name for a in ctx.local.agents]):
        name = comp.name.split(":", 1)[1]
        token = ctx.record.join_tokens[name]
        assert not any(token in arg for arg in comp.argv), comp.argv
        assert "-joinToken" not in comp.argv
        path = join_token_file(ctx, name)
        assert comp.argv[comp.argv.index("-joinTokenFile") + 1] == str(path)
        assert path.read_text().strip() == token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert token not in Path(ctx.paths.agent_config(name)).read_text()


def test_a_new_join_token_restarts_the_agent_and_rewrites_its_file(tmp_path: Path) -> None:
    ctx = written(tmp_path / "state", 43000)
    name = ctx.local.agents[0].name
    before = agent_components(ctx, [name])[0]
    ctx.record.join_tokens[name] = "a-new-token"
    after = agent_components(ctx, [name])[0]
    assert before.argv == after.argv and before.env != after.env  # a new plan: a restart
    path = join_token_file(ctx, name)
    path.chmod(0o644)  # loosened by hand: rewriting it makes it private again
    write_configs(ctx, [], [name])
    assert path.read_text() == "a-new-token\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_step_restarts_what_it_reached_and_keeps_the_rest_as_it_runs(tmp_path: Path) -> None:
    """The server step of a port-base change publishes the servers' new components but
    keeps running agents (and their workloads) as they run until the agent step, after
    every file is written: an agent restarted with its server gave up on it for 5 s."""
    old = written(tmp_path / "state", 43000)
    running = desired_components(old)
    old.supervisor.set_components(running)  # no supervisor runs: only the plan file
    new = context(tmp_path / "state", 44000)
    servers = [s.name for s in new.local.servers]
    publish(new, servers, [])
    planned = {c.name: c for c in new.supervisor.planned()}
    wanted = {c.name: c for c in desired_components(new)}
    assert set(planned) == {c.name for c in running}
    for name, component in planned.items():
        reached = name.startswith("server:")
        assert component == (wanted[name] if reached else {c.name: c for c in running}[name])
    for name in servers:
        assert Path(new.paths.server_config(name)).read_text() == server_config(new, name).text
    agents = [a.name for a in new.local.agents]
    publish(new, servers, agents)
    planned = {c.name: c for c in new.supervisor.planned()}
    before = {c.name: c for c in running}
    # Prometheus and Alertmanager keep running as they do until the last step
    assert planned == {n: before[n] if n.startswith("monitoring:") else c
                       for n, c in wanted.items()}  # fmt: skip
    publish(new, servers, agents, monitoring=True)
    assert {c.name: c for c in new.supervisor.planned()} == wanted
    assert {n for n in wanted if n.startswith("monitoring:")} == {
        "monitoring:prometheus", "monitoring:alertmanager"}  # fmt: skip
    for a in new.local.agents:
        assert Path(new.paths.agent_config(a.name)).read_text() == agent_config(new, a.name).text


def test_a_foreign_server_answering_on_our_port_is_not_read_as_ours(tmp_path: Path) -> None:
    """Another deployment's server (a test at another port base, a dev's `up`) may answer
    /ready on the port this plan's server will use; its entries are not ours to compare."""
    import http.server
    import threading

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    ctx = written(tmp_path / "state", 43000)
    health = next(s for s in ctx.local.servers).ports.health
    httpd = http.server.HTTPServer(("127.0.0.1", health), Ready)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        plan = compute_plan(context(tmp_path / "state", 43000))  # would dial its socket
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert any("is not running: its entries are compared after it starts" in n
               for n in plan.notes)  # fmt: skip


def test_a_state_dir_given_as_a_str_is_taken_like_a_path(tmp_path, monkeypatch) -> None:
    """`LocalDeployment.open("~/...")` from a notebook: a str, with ~, as a Path would be."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert StateDir("~/state").path == StateDir(tmp_path / "state").path == tmp_path / "state"


def test_sidecars_get_their_upstreams_once_for_every_running_workload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sidecar's command names where the workloads it fronts listen, read from the
    whole topology once (not once per running workload: 50k workloads in a scale plan);
    a running workload without sidecars gets none."""
    from spire_fabric.runtime.local import sidecars

    ctx = context(tmp_path / "state", 24000)
    reads: list[str] = []
    real = sidecars._targets

    def counted(local: Topology) -> dict[str, str]:
        reads.append(local.name)
        return real(local)

    monkeypatch.setattr(sidecars, "_targets", counted)
    got = sidecars.sidecar_processes(ctx)
    with_sidecars = [w for w in ctx.local.workloads if w.run is not None and w.sidecars]
    assert len(with_sidecars) > 1 and reads == [ctx.local.name]
    assert [(p.workload.name, p.sidecar.name) for p in got] == [
        (w.name, s.name) for w in with_sidecars for s in w.sidecars
    ]
    targets = real(ctx.local)
    client = next(p for p in got if p.sidecar.mode == "client")
    assert targets[client.sidecar.target] in " ".join(client.component.argv)
