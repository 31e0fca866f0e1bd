"""Workloads described as data: run descriptions validate, round-trip, and resolve."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from spire_fabric.topology import (
    HealthProbe,
    LocalRun,
    PlaceholderError,
    TopologyError,
    dump_topology,
    expand_placeholders,
    load_topology,
    placeholders,
    preset,
    validate_topology,
)

SRC = Path(__file__).resolve().parents[3] / "src" / "spire_fabric"


def _with_run(run: LocalRun, name: str = "example-app"):
    t = preset("basic")
    w = dataclasses.replace(t.workload(name), run=run)
    return dataclasses.replace(t, workloads=(w,))


def _problems(topology) -> str:
    with pytest.raises(TopologyError) as info:
        validate_topology(topology)
    return str(info.value)


def test_every_preset_round_trips_its_run_descriptions_through_yaml():
    for name in ("basic", "enterprise", "nested", "crd-free"):
        t = preset(name)
        assert load_topology(dump_topology(t)) == t


def test_placeholders_are_parsed_and_expanded():
    found = placeholders("--api {url:enterprise-api} --listen {listen}")
    assert [(p.key, p.workload) for p in found] == [("url", "enterprise-api"), ("listen", None)]
    out = expand_placeholders("a{port}b{spiffe_id:x}c", lambda p: f"<{p.key}:{p.workload}>")
    assert out == "a<port:None>b<spiffe_id:x>c"


def test_unknown_placeholder_key_is_an_error_not_passed_through():
    with pytest.raises(PlaceholderError, match=r"unknown placeholder '\{prot\}'"):
        placeholders("--port {prot}")


def test_run_needs_exactly_one_of_module_or_command():
    both = _problems(_with_run(LocalRun(module="m", command=("x",))))
    assert "workloads[example-app].run: give exactly one of `module`" in both
    neither = _problems(_with_run(LocalRun()))
    assert "give exactly one of" in neither


def test_placeholder_naming_an_unknown_workload_is_refused():
    text = _problems(_with_run(LocalRun(module="m", args=("--api", "{url:ghost}"))))
    assert "workloads[example-app].run.args[1]: {url:ghost}: unknown workload 'ghost'" in text


def test_url_of_a_workload_without_a_port_is_refused():
    text = _problems(_with_run(LocalRun(module="m", args=("{listen}",))))
    assert "{listen}: workload 'example-app' has no run.port to use" in text


def test_env_must_be_name_equals_value_and_health_needs_a_port():
    text = _problems(
        _with_run(LocalRun(module="m", env=("not an assignment",), health=HealthProbe()))
    )
    assert "run.env[0]: 'not an assignment' must look like NAME=value" in text
    assert "run.health: a health probe needs the workload's `port`" in text


def test_health_caller_must_be_a_workload_of_the_topology():
    text = _problems(_with_run(LocalRun(module="m", port=9000, health=HealthProbe(caller="x"))))
    assert "run.health.caller: unknown workload 'x'" in text


def test_the_library_names_no_example_program_outside_the_presets_data():
    """The runtime, verify and renderers know workloads only through the topology."""
    names = re.compile(
        r"enterprise[-_]api|data[-_]processor|security[-_]gateway|--allow-trust-domain"
        r"|--jwt-audience|examples\."
    )
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("examples/", "topology/_presets.py", "proto/")):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if names.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []
