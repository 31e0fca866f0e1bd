"""The version-skew guard: SPIRE's documented rules (doc/upgrading.md of SPIRE 1.13.3)."""

from __future__ import annotations

import json

import pytest

from spire_fabric.runtime.binaries import SPIRE_VERSION
from spire_fabric.runtime.core.versions import (
    VERSIONS_FILE,
    SpireVersion,
    VersionSkewError,
    check_skew,
    component_versions,
    image_version,
    load_versions,
    save_versions,
    skew_problems,
)
from spire_fabric.runtime.deployment import DeploymentPlan
from spire_fabric.runtime.local.deployment import LocalDeployment
from spire_fabric.runtime.local.localize import LocalSettings
from spire_fabric.runtime.local.planning import planned_versions
from spire_fabric.topology import preset

T = preset("enterprise")
DOWN = "server/spire-downstream-server"
UP = "server/spire-upstream-server"


def everything(server: str, agent: str) -> dict[str, str]:
    return component_versions(T, server, agent)


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("ghcr.io/spiffe/spire-server:1.13.3", "1.13.3"),
        ("registry.local:5000/spire-agent:v1.13.0", "1.13.0"),
        ("ghcr.io/spiffe/spire-server@sha256:" + "a" * 64, None),
        ("ghcr.io/spiffe/spire-server:latest", None),
        ("registry.local:5000/spire-server", None),
    ],
)
def test_image_tag_names_the_version_or_nothing(image, version):
    assert image_version(image) == version


def test_versions_order_by_number_not_text():
    assert SpireVersion.parse("1.13.3") > SpireVersion.parse("1.9.9")
    with pytest.raises(ValueError, match="not a SPIRE version"):
        SpireVersion.parse("1.13")


def test_every_server_and_agent_gets_a_version():
    v = everything("1.13.3", "1.13.3")
    assert set(v) == {f"server/{s.name}" for s in T.servers} | {f"agent/{a.name}" for a in T.agents}


def test_a_fresh_deployment_and_a_patch_upgrade_are_fine():
    assert skew_problems(T, {}, everything("1.13.3", "1.13.3")) == []
    assert skew_problems(T, everything("1.13.0", "1.13.0"), everything("1.13.3", "1.13.0")) == []


def test_a_server_upgrade_by_one_minor_is_fine():
    assert skew_problems(T, everything("1.13.3", "1.13.3"), everything("1.14.0", "1.13.3")) == []


def test_a_server_upgrade_that_skips_a_minor_is_refused_for_each_server():
    problems = skew_problems(T, everything("1.13.3", "1.13.3"), everything("1.15.0", "1.13.3"))
    servers = [p for p in problems if p.startswith("server/")]
    assert len(servers) == 2
    assert any(p.startswith(f"{DOWN}: upgrade 1.13.3 -> 1.15.0 moves 2 minor") for p in servers)
    # and the agents left at 1.13 would be two minors behind
    assert any("more than one minor version older" in p for p in problems)


def test_a_major_jump_and_a_two_minor_downgrade_are_refused():
    up = skew_problems(T, everything("1.13.3", "1.13.3"), everything("2.0.0", "1.13.3"))
    assert any(p.startswith(f"{UP}: upgrade 1.13.3 -> 2.0.0") for p in up)
    down = skew_problems(T, everything("1.13.3", "1.11.0"), everything("1.11.0", "1.11.0"))
    assert any(p.startswith(f"{UP}: downgrade 1.13.3 -> 1.11.0 moves 2") for p in down)


def test_an_agent_newer_than_its_server_is_refused():
    problems = skew_problems(T, {}, everything("1.13.0", "1.13.3"))
    agents = [p for p in problems if p.startswith("agent/")]
    assert len(agents) == len(T.agents)
    assert "newer than the oldest version of its server" in agents[0]


def test_servers_and_agents_raised_in_one_up_are_refused_servers_first():
    """The rollout runs old servers beside new agents, so the recorded version counts."""
    problems = skew_problems(T, everything("1.13.0", "1.13.0"), everything("1.14.0", "1.14.0"))
    assert problems and all(p.startswith("agent/") for p in problems)
    assert all("(1.13.0)" in p and "upgrade the servers first" in p for p in problems)
    # servers first, then agents: each step is fine
    step1 = everything("1.14.0", "1.13.0")
    assert skew_problems(T, everything("1.13.0", "1.13.0"), step1) == []
    assert skew_problems(T, step1, everything("1.14.0", "1.14.0")) == []


def test_check_skew_lists_every_problem():
    with pytest.raises(VersionSkewError) as info:
        check_skew(T, {}, everything("1.13.0", "1.14.0"))
    assert str(info.value).count("\n  agent/") == len(T.agents)


def test_versions_are_recorded_and_read_back(tmp_path):
    assert load_versions(tmp_path) == {}
    save_versions(tmp_path, everything("1.13.3", "1.13.3"))
    assert load_versions(tmp_path) == everything("1.13.3", "1.13.3")
    assert json.loads((tmp_path / VERSIONS_FILE).read_text())[DOWN] == "1.13.3"


def test_plan_json_lists_the_versions():
    plan = DeploymentPlan("t", "local", versions=(("server/a", "1.13.3"),))
    assert json.loads(plan.to_json())["versions"] == {"server/a": "1.13.3"}


def test_local_plan_checks_against_what_the_last_up_recorded(tmp_path):
    d = LocalDeployment.create(T, tmp_path / "state", LocalSettings())
    assert set(planned_versions(d.ctx).values()) == {SPIRE_VERSION}
    (tmp_path / "state").mkdir()
    save_versions(tmp_path / "state", everything("1.11.0", "1.11.0"))
    with pytest.raises(VersionSkewError, match=r"upgrade 1\.11\.0 -> 1\.13\.3 moves 2 minor"):
        planned_versions(d.ctx)

