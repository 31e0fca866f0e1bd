"""The wheel is the product: built, installed into a fresh virtualenv outside the checkout,
it runs the whole job (`up` to a green verify, `down`) as it does from the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from spire_fabric.runtime.local import LocalDeployment
from spire_fabric.testing import short_tempdir
from spire_fabric.verify import verify_deployment

from .conftest import free_port_base

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_in_a_fresh_virtualenv_runs_up_to_the_same_green_verify(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=tmp_path)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "spire_fabric/examples/enterprise_api/__main__.py" in names
    assert not [n for n in names if n.startswith("examples/")]  # no top-level `examples`
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any("/tests/e2e/" in m for m in members) and any("/docs/" in m for m in members)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], cwd=tmp_path)

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
        assert len(workloads) == 3 and all(c.argv[0] == str(python) for c in workloads)
    finally:
        down = [str(python), "-m", "spire_fabric.deploy", "down", "--state-dir", str(state)]
        subprocess.run([*down, "--purge"], cwd=outside, capture_output=True, timeout=120)
    assert not state.exists()
