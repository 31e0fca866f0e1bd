"""The target is chosen once, from the arguments and what a deployment recorded; a flag
that does not apply to it is refused, never ignored."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from spire_fabric.deploy.cli import main
from spire_fabric.runtime.local import LocalDeployment, LocalSettings
from spire_fabric.runtime.local.provider import LocalProvider
from spire_fabric.runtime.registry import choose_target
from spire_fabric.runtime.targets import DeploymentOptions, TargetError
from spire_fabric.topology import preset

SRC = Path(__file__).resolve().parents[3] / "src" / "spire_fabric"


@pytest.fixture
def state_root(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path / "spire-fabric"


def test_a_port_base_on_the_kubernetes_target_is_refused_naming_the_option(capsys, tmp_path):
    code = main(["up", "--target", "kubernetes", "--port-base", "40000",
                 "--state-dir", str(tmp_path / "s")])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0
    assert "--port-base does not apply to --target kubernetes" in err
    assert not (tmp_path / "s").exists()


def test_kubernetes_flags_on_the_local_target_are_refused(capsys, tmp_path):
    code = main(["plan", "--image", "server=x:1", "--timeout", "5",
                 "--state-dir", str(tmp_path / "s")])  # fmt: skip
    assert code != 0
    assert "--image, --timeout does not apply to --target local" in capsys.readouterr().err


def test_a_target_left_out_is_the_one_whose_deployment_is_there(state_root):
    kube_dir = state_root / "basic@kubernetes"
    kube_dir.mkdir(parents=True)
    (kube_dir / "kubernetes.json").write_text(json.dumps({}))
    p, path = choose_target(None, "basic", None)
    assert (p.name, path) == ("kubernetes", kube_dir)
    # a local deployment of the same name wins, as attach() decides
    local = LocalDeployment.create(preset("basic"), state_root / "basic", LocalSettings())
    local.state.save(local.record, local.written_topology)
    p, path = choose_target(None, "basic", None)
    assert (p.name, path) == ("local", state_root / "basic")


def test_a_state_dir_of_the_other_target_is_refused(tmp_path):
    (tmp_path / "kubernetes.json").write_text("{}")
    with pytest.raises(TargetError, match="holds a kubernetes deployment, not a local one"):
        choose_target("local", None, tmp_path)


def test_local_settings_stick_until_a_flag_changes_them(tmp_path):
    state = tmp_path / "s"
    d = LocalDeployment.create(preset("basic"), state, LocalSettings(port_base=43000))
    d.state.save(d.record, d.written_topology)
    p = LocalProvider()
    assert p.settings(state, DeploymentOptions()).port_base == 43000
    assert p.setting_changes(state, DeploymentOptions()) == []
    changes = p.setting_changes(state, DeploymentOptions(port_base=44000))
    assert [c.describe() for c in changes] == [
        "update setting port-base: 43000 -> 44000 (given by --port-base)"
    ]
    redacted = p.setting_changes(state, DeploymentOptions(datastore="mysql://u:pw@h:1/db"))
    assert "pw" not in redacted[0].detail and "u:***@h:1" in redacted[0].detail


def test_no_module_outside_render_imports_a_private_render_module():
    """The renderer is the only maker of Kubernetes objects: its vocabulary is public."""
    found = subprocess.run(
        ["grep", "-rnE", r"render\.kubernetes\._|render\._",
         *(str(SRC / d) for d in ("runtime", "deploy", "verify", "dashboard"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.stdout == ""


def test_the_rendered_file_order_is_the_apply_order_up_uses():
    from spire_fabric.render.kubernetes import STAGES

    files = [s.file for s in STAGES]
    assert files == sorted(files)
    assert [int(re.match(r"(\d+)-", f).group(1)) for f in files] == list(range(len(files)))
    names = [f.split("-", 1)[1] for f in files]
    assert names.index("registrations.yaml") < names.index("workloads.yaml")
    assert names.index("secrets.yaml") < names.index("mysql.yaml") < names.index("servers.yaml")
