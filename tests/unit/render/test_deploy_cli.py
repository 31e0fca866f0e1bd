"""`python -m spire_fabric.deploy plan|render`: output, files, and clean failure."""

from __future__ import annotations

import subprocess
import sys

from spire_fabric.deploy.cli import main
from spire_fabric.topology import dump_topology, load_topology, preset


def test_plan_lists_servers_agents_and_entries(capsys, tmp_path):
    # exit 2: there is something to create (terraform's -detailed-exitcode)
    assert main(["plan", "--topology", "enterprise", "--state-dir", str(tmp_path / "s")]) == 2
    out = capsys.readouterr().out
    for needle in ("spire-upstream-server", "downstream-agent-3", "security-gateway", "SQLite"):
        assert needle in out


def test_kubernetes_plan_with_an_unknown_context_names_it_and_what_exists(capsys, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: other\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: other, context: {cluster: c, user: u}}]\n"
    )
    code = main(["plan", "--topology", "enterprise", "--target", "kubernetes",
                 "--kubeconfig", str(kubeconfig), "--state-dir", str(tmp_path / "s")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "unknown context 'upstream-spire-cluster' for cluster upstream-cluster" in err
    assert "has other" in err


def test_render_writes_configs_topology_and_diagram(tmp_path):
    out = tmp_path / "out"
    assert main(["render", "--topology", "enterprise", "-o", str(out)]) == 0
    assert (out / "servers/spire-upstream-server/server.conf").is_file()
    assert (out / "agents/downstream-agent-1/agent.conf").is_file()
    assert (out / "architecture.mmd").read_text().startswith("flowchart LR")
    assert load_topology(out / "topology.yaml") == preset("enterprise")


def test_render_accepts_a_yaml_file(tmp_path):
    src = tmp_path / "mine.yaml"
    src.write_text(dump_topology(preset("nested")))
    assert main(["render", "--topology", str(src), "-o", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o/servers/spire-child-server/server.conf").is_file()


def test_unknown_preset_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["render", "--topology", "huge", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a preset" in err
    assert not out.exists()


def test_yaml_with_an_error_exits_2_with_the_field_path(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_topology(preset("basic")).replace("agent: spire-agent", "agent: ghost"))
    out = tmp_path / "out"
    assert main(["render", "--topology", str(bad), "-o", str(out)]) == 2
    assert "workloads[example-app].agent: unknown agent 'ghost'" in capsys.readouterr().err
    assert not out.exists()


def test_module_entry_point_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "spire_fabric.deploy", "plan", "--topology", "basic",
         "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # a new deployment: everything to create
    assert "spire-server" in result.stdout


def test_render_names_its_directory_flag_apart_from_the_output_format(tmp_path, capsys):
    # `--output` is a format (table|json) everywhere else; render's directory is -o/--output-dir
    assert main(["render", "--topology", "basic", "--output-dir", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "topology.yaml").is_file()
    assert main(["render", "--topology", "basic", "--output", str(tmp_path / "b")]) == 2
    assert "-o/--output-dir DIR" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
