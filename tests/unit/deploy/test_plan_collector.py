"""`plan` runs without the cyclic garbage collector (its passes over 50k workloads' acyclic
objects were a sixth of the plan) and gives it back, also when the plan fails."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from spire_fabric.deploy import plan as plan_cmd
from spire_fabric.deploy.cli import main


def test_plan_runs_without_the_cyclic_collector_and_gives_it_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[bool] = []
    real = plan_cmd._run

    def spy(*args: object) -> int:
        seen.append(gc.isenabled())
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(plan_cmd, "_run", spy)
    argv = ["plan", "--topology", "scale:agents=1,workloads=2,running=0", "--state-dir"]
    assert main([*argv, str(tmp_path / "state"), "--output", "json"]) == plan_cmd.EXIT_CHANGES
    assert (seen, gc.isenabled()) == ([False], True)
    assert '"kind": "entry"' in capsys.readouterr().out


def test_a_failing_plan_gives_the_collector_back(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert main(["plan", "--topology", "scale:agents=1", "--state-dir", str(not_a_dir)]) == 1
    assert gc.isenabled()
