"""The ``scale`` preset: its spelling, its shape, and errors that name the parameter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from spire_fabric.deploy._common import UsageError, resolve_topology
from spire_fabric.topology import ScaleParameters, parse_scale, preset


def test_defaults_are_twenty_agents_two_hundred_workloads_five_running():
    t = preset("scale")
    assert len(t.agents) == 20
    assert len(t.workloads) == 200
    assert [w.name for w in t.workloads if w.run is not None] == [f"workload-{i}" for i in range(5)]
    # the running ones sit on distinct agents, and every agent gets ten workloads
    assert len({w.agent for w in t.workloads if w.run is not None}) == 5
    assert {sum(w.agent == a.name for w in t.workloads) for a in t.agents} == {10}


def test_parameters_in_any_order_size_the_topology():
    t = preset("scale:entries=30,running=2,agents=3,workloads=6")
    assert len(t.agents) == 3
    assert len(t.workloads) == 36
    assert sum(w.run is not None for w in t.workloads) == 2
    assert sum(w.name.startswith("entry-") for w in t.workloads) == 30
    ports = [w.run.port for w in t.workloads if w.run is not None]
    assert len(set(ports)) == len(ports)


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("agents=0", "agents=0 is outside 1..200"),
        ("agents=201", "agents=201 is outside 1..200"),
        ("agents=x", "agents must be a whole number"),
        ("agents=-1", "agents must be a whole number"),
        ("workers=3", "unknown parameter 'workers'"),
        ("agents=2,agents=3", "agents is given twice"),
        ("workloads=3,running=4", "running=4 exceeds workloads=3"),
    ],
)
def test_a_bad_parameter_is_named(spec: str, names: str):
    with pytest.raises(ValueError, match=names):
        parse_scale(spec)


def test_the_command_line_names_the_bad_parameter():
    with pytest.raises(UsageError, match=r"--topology scale:agents=0: scale: agents=0 is outside"):
        resolve_topology("scale:agents=0")
    with pytest.raises(UsageError, match="takes no parameters"):
        resolve_topology("basic:agents=2")
    assert len(resolve_topology("scale:agents=2,workloads=4").agents) == 2


def test_empty_parameters_are_the_defaults():
    assert parse_scale("") == ScaleParameters()


def test_fifty_thousand_registrations_build_and_validate_in_seconds():
    start = time.perf_counter()
    t = preset("scale:entries=50000")
    assert len(t.workloads) == 50_200
    # generous bound for a loaded 2-core machine; the benchmark measures the real figure
    assert time.perf_counter() - start < 10


def test_local_servers_lift_the_per_ip_attestation_limit_and_kubernetes_keeps_it():
    golden = Path(__file__).parents[2] / "golden"
    local = sorted(golden.glob("*/local/servers/*/server.conf"))
    kube = [p for p in golden.rglob("*") if p.is_file() and "/kubernetes/" in p.as_posix()]
    assert local and kube
    for conf in local:
        assert "    ratelimit {\n        attestation = false\n    }" in conf.read_text(), conf
    # on Kubernetes SPIRE's per-IP limits stay on; a server with replicas (enterprise's
    # downstream) renders them explicitly (docs/high-availability.md, "Rate limits")
    limited = [p for p in kube if "ratelimit" in p.read_text()]
    assert limited, "the enterprise downstream server's replicas render their rate limits"
    for p in limited:
        assert "attestation = false" not in p.read_text(), p
        assert "/enterprise/" in p.as_posix() and "spire-downstream" in p.read_text(), p


def test_a_large_plan_table_shows_twenty_changes_per_kind_and_counts_the_rest():
    from rich.console import Console

    from spire_fabric.deploy._output import print_plan
    from spire_fabric.runtime.deployment import Change, DeploymentPlan

    changes = tuple(Change("create", "entry", f"spiffe://x.org/w/{i}") for i in range(50))
    console = Console(record=True, width=200)
    print_plan(DeploymentPlan("scale", "local", changes), console)
    text = console.export_text()
    assert "spiffe://x.org/w/19\n" in text
    assert "spiffe://x.org/w/20\n" not in text
    assert "... and 30 more entry to create" in text
    assert "plan: 50 to create" in text


def test_plan_json_carries_every_field_of_a_change():
    import dataclasses
    import json

    from spire_fabric.runtime.deployment import Change, DeploymentPlan

    change = Change("update", "entry", "spiffe://x.org/w", "on s", ("selectors",))
    doc = json.loads(DeploymentPlan("scale", "local", (change,)).to_json())
    assert doc["changes"] == [
        {**dataclasses.asdict(change), "fields": ["selectors"]}  # every field, none missed
    ]


def test_the_kubernetes_target_refuses_the_local_only_scale_topology_by_name(tmp_path):
    from spire_fabric.runtime.kubernetes.provider import KubernetesProvider
    from spire_fabric.runtime.targets import DeploymentOptions, TargetError

    topology = preset("scale:agents=1,workloads=1")
    with pytest.raises(TargetError, match=r"server\(s\) spire-server have no kubernetes placement"):
        KubernetesProvider().create(topology, tmp_path / "state", DeploymentOptions())
