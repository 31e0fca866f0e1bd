"""`deploy plan` and `deploy verify` end with one ``warning:`` line per agent that opted into
a weaker kubelet setting (``kubelet_verification: skip``, ``kubelet_access: nodes/proxy``).
The deployment is a stand-in: what is under test is that both commands print the warnings of
the topology they act on, whatever the clusters say."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from spire_fabric.deploy import plan as plan_cmd
from spire_fabric.deploy import verify as verify_cmd
from spire_fabric.deploy.cli import main
from spire_fabric.runtime.deployment import DeploymentPlan
from spire_fabric.topology import Topology, preset, validate_topology
from spire_fabric.verify import CheckResult, Report

WARNING = "warning: agent downstream-agent-3: kubelet_verification is skip"


def skipping() -> Topology:
    t = preset("enterprise")
    agents = tuple(
        dataclasses.replace(a, kubernetes=dataclasses.replace(a.kubernetes,
                                                              kubelet_verification="skip"))
        if a.name == "downstream-agent-3" and a.kubernetes is not None else a
        for a in t.agents
    )  # fmt: skip
    return validate_topology(dataclasses.replace(t, agents=agents))


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Any:
    deployment = SimpleNamespace(
        topology=skipping(), target="kubernetes",
        plan=lambda: DeploymentPlan("enterprise", "kubernetes"),
    )  # fmt: skip

    @contextlib.contextmanager
    def opened() -> Iterator[Any]:
        yield deployment

    chosen = SimpleNamespace(
        state_dir=None, options=None, create=opened, open=opened,
        provider=SimpleNamespace(holds=lambda _: True, setting_changes=lambda *_: ()),
    )  # fmt: skip
    monkeypatch.setattr(plan_cmd, "choose", lambda args: chosen)
    monkeypatch.setattr(verify_cmd, "choose", lambda args: chosen)
    report = Report("enterprise", (CheckResult("x", "x", True, "fine"),))
    monkeypatch.setattr(verify_cmd, "verify_deployment", lambda d: report)
    return deployment


@pytest.mark.parametrize("command", ["plan", "verify"])
def test_the_warning_names_the_agent_in_table_and_json_output(
    command: str, stand_in: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--topology", "enterprise", "--target", "kubernetes"]) == 0
    out = capsys.readouterr().out
    assert WARNING in out and out.count("warning:") == 1
    assert main([command, "--topology", "enterprise", "--target", "kubernetes",
                 "--output", "json"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "warning" not in captured.out and WARNING in captured.err


def test_no_warning_without_an_opt_in(stand_in: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stand_in.topology = preset("enterprise")
    assert main(["plan", "--topology", "enterprise", "--target", "kubernetes"]) == 0
    assert "warning" not in capsys.readouterr().out
