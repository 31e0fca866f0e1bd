"""The wheel is the product: built once, installed into fresh virtualenvs outside the
checkout, with no extra (the SDK alone: no Kubernetes client, no rich) and with each extra;
with ``[deploy]`` it runs the whole job (`up` to a green verify, `down`) as the checkout does.

Each virtualenv is made without pip and filled by this interpreter's pip (``pip --python``),
without byte-compiling (Python compiles what it imports); pip's cache makes a repeat run
need no download.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from spire_fabric.runtime.local import LocalDeployment
from spire_fabric.testing import short_tempdir
from spire_fabric.topology import preset
from spire_fabric.verify import verify_deployment

from .conftest import free_port_base

ROOT = Path(__file__).resolve().parents[2]

SDK = (
    "spire_fabric",
    "spire_fabric.identity",
    "spire_fabric.workload",
    "spire_fabric.tls",
    "spire_fabric.federation",
    "spire_fabric.server",
    "spire_fabric.agent",
    "spire_fabric.entries",
    "spire_fabric.topology",
    "spire_fabric.render",
    "spire_fabric.render.kubernetes",
)
_FOUND = "import importlib.util as u, sys; print(*[bool(u.find_spec(m)) for m in sys.argv[1:]])"


def _run(
    argv: list[str], cwd: Path, timeout: float = 600, status: int = 0
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    assert result.returncode == status, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("*.whl")
    return found


def _venv(wheel: Path, extra: str | None, where: Path) -> Path:
    """A fresh virtualenv with the wheel (and ``extra``) installed; its python."""
    venv = where / f"venv-{extra or 'plain'}"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=where)
    python = venv / "bin" / "python"
    spec = f"{wheel}[{extra}]" if extra else str(wheel)
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-compile", spec], cwd=where)  # fmt: skip
    return python


def _found(python: Path, *modules: str) -> list[bool]:
    out = _run([str(python), "-c", _FOUND, *modules], cwd=python.parent).stdout
    return [word == "True" for word in out.split()]


@pytest.fixture(scope="module")
def deploy_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv(wheel, "deploy", tmp_path_factory.mktemp("deploy"))


def test_wheel_ships_the_examples_in_our_namespace_and_the_sdist_the_tests(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "spire_fabric/examples/enterprise_api/__main__.py" in names
    assert not [n for n in names if n.startswith("examples/")]  # no top-level `examples`
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any("/tests/e2e/" in m for m in members) and any("/docs/" in m for m in members)


def test_plain_wheel_is_the_sdk_and_each_command_names_its_extra(
    wheel: Path, tmp_path: Path
) -> None:
    python = _venv(wheel, None, tmp_path)
    assert _found(python, "kubernetes", "rich", "starlette") == [False, False, False]
    imports = "".join(f"import {name}\n" for name in SDK)
    _run([str(python), "-c", imports], cwd=tmp_path)
    for command, extra in [
        (["spire_fabric.deploy", "up"], "deploy"),
        (["spire_fabric.dashboard"], "dashboard"),
        (["spire_fabric.entries", "list", "--owner", "x"], "cli"),
    ]:
        result = _run([str(python), "-m", *command], cwd=tmp_path, status=2)
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()  # one line, no traceback
        assert line.endswith(f"pip install 'spire-fabric[{extra}]'"), line


def test_deploy_extra_brings_the_installer_and_not_the_dashboard(deploy_python: Path) -> None:
    assert _found(deploy_python, "kubernetes", "rich", "starlette") == [True, True, False]
    result = _run([str(deploy_python), "-m", "spire_fabric.deploy", "--help"],
                  cwd=deploy_python.parent)  # fmt: skip
    assert "usage: python -m spire_fabric.deploy" in result.stdout
    for command in ("up", "verify", "down"):
        assert command in result.stdout


def test_dashboard_extra_brings_the_dashboard_and_the_installer_it_uses(
    wheel: Path, tmp_path: Path
) -> None:
    python = _venv(wheel, "dashboard", tmp_path)
    assert _found(python, "kubernetes", "rich", "starlette", "uvicorn") == [True] * 4
    code = "from spire_fabric.dashboard import PAGES, create_app; print(*PAGES)"
    assert "overview" in _run([str(python), "-c", code], cwd=tmp_path).stdout.split()
    result = _run([str(python), "-m", "spire_fabric.dashboard", "--help"], cwd=tmp_path)
    assert "usage: python -m spire_fabric.dashboard" in result.stdout


def test_wheel_in_a_fresh_virtualenv_runs_up_to_the_same_green_verify(
    deploy_python: Path, tmp_path: Path
) -> None:
    python = deploy_python
    state = short_tempdir("sf-wheel-") / "state"
    base = str(free_port_base())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    try:
        up = _run([str(python), "-m", "spire_fabric.deploy", "up", "--state-dir", str(state),
                   "--port-base", base], cwd=outside)  # fmt: skip
        assert "0 failed" in up.stdout
        verify = _run([str(python), "-m", "spire_fabric.deploy", "verify", "--state-dir",
                       str(state), "--output", "json"], cwd=outside)  # fmt: skip
        from_wheel = json.loads(verify.stdout)
        assert from_wheel["ok"] is True
        # the checkout's verifier sees the same deployment the same way, check for check
        from_checkout = verify_deployment(LocalDeployment.open(state))
        assert from_checkout.ok
        assert [c["id"] for c in from_wheel["checks"]] == [c.id for c in from_checkout.checks]
        assert "workload-health:security-gateway" in {c["id"] for c in from_wheel["checks"]}
        # the workloads ran from the wheel, not from the checkout
        planned = LocalDeployment.open(state).supervisor.planned()
        workloads = [c for c in planned if c.name.startswith("workload:")]
        running = {f"workload:{w.name}" for w in preset("enterprise").workloads if w.run}
        assert {c.name for c in workloads} == running, "every workload that runs, runs"
        assert all(c.argv[0] == str(python) for c in workloads)
    finally:
        down = [str(python), "-m", "spire_fabric.deploy", "down", "--state-dir", str(state)]
        subprocess.run([*down, "--purge"], cwd=outside, capture_output=True, timeout=120)
    assert not state.exists()
