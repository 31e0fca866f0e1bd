"""`localize` checks again only what it changes (validate_localized), and refuses what it
breaks with the very message a full validate_topology gives on the same localized topology."""

from __future__ import annotations

import importlib

import pytest

from spire_fabric.runtime.local.localize import LocalizeError, LocalSettings, localize
from spire_fabric.topology import Topology, TopologyBuilder, TopologyError, validate_topology


def _builder(*, host_b: str = "127.0.0.2", attestors: tuple[str, ...] = ("unix",),
             selector: str = "unix:uid:1000") -> TopologyBuilder:  # fmt: skip
    return (
        TopologyBuilder("t")
        .trust_domain("a.org")
        .trust_domain("b.org")
        .server("srv-a", "a.org", host="127.0.0.1", ca_ttl="24h")
        .server("srv-b", "b.org", host=host_b, ca_ttl="24h")
        .federate("srv-a", "srv-b")
        .agent("agent-a", "srv-a", workload_attestors=list(attestors))
        .workload("app", "spiffe://a.org/app", agent="agent-a", selectors=[selector])
    )


def _full_pass_problems(topology: Topology, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What validate_topology says about the topology localize makes (localize run with its
    own re-check switched off, to get at that topology)."""
    made: list[Topology] = []
    # the module, not the function the package re-exports under the same name
    localize_module = importlib.import_module("spire_fabric.runtime.local.localize")
    with monkeypatch.context() as m:
        m.setattr(localize_module, "validate_localized", made.append)
        localize(topology, LocalSettings(uid=4242))
    with pytest.raises(TopologyError) as full:
        validate_topology(made[0])
    return [str(p) for p in full.value.problems]


def test_servers_moved_onto_one_loopback_address_are_refused_as_a_port_collision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topology = _builder(host_b="10.0.0.2").build()  # sound: the servers' hosts differ
    with pytest.raises(TopologyError) as info:
        localize(topology, LocalSettings(uid=4242))
    problems = [str(p) for p in info.value.problems]
    assert problems == _full_pass_problems(topology, monkeypatch)
    assert any("port collision on 127.0.0.1:8081" in p for p in problems), problems


def test_a_local_selector_the_agent_cannot_attest_is_refused_with_the_full_pass_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topology = _builder(attestors=("k8s",), selector="k8s:ns:payments").build()
    with pytest.raises(TopologyError) as info:
        localize(topology, LocalSettings(uid=4242))
    problems = [str(p) for p in info.value.problems]
    assert problems == _full_pass_problems(topology, monkeypatch)
    assert problems == [
        "workloads[app].local_selectors: selector 'unix:uid:4242' needs the 'unix' workload "
        "attestor, but agent 'agent-a' runs only none here"
    ]


def test_a_port_base_that_moves_a_port_out_of_range_is_refused() -> None:
    with pytest.raises(LocalizeError) as info:
        localize(_builder().build(), LocalSettings(port_base=90000))
    assert str(info.value) == (
        "--port-base moves a port to 67081, outside 1024-65535; pick another base"
    )


def test_an_unvalidated_topology_gets_every_rule_before_it_is_localized() -> None:
    unchecked = (
        _builder()
        .workload("app", "spiffe://a.org/other", agent="agent-a", selectors=["unix:uid:1"])
        .build(validate=False)
    )
    with pytest.raises(TopologyError, match=r"workloads\[app\]: name is used 2 times"):
        localize(unchecked, LocalSettings(uid=4242))


def test_a_workloads_parsed_id_is_kept_and_never_outlives_its_spiffe_id() -> None:
    import dataclasses

    from spire_fabric.identity import SpiffeId
    from spire_fabric.runtime.local.localize import _with

    t = TopologyBuilder("t").trust_domain("a.org").server("s", "a.org")
    t = t.agent("ag", "s").workload("w", "spiffe://a.org/w", agent="ag", selectors=["unix:uid:1"])
    w = t.build().workloads[0]
    assert w.parsed_spiffe_id == SpiffeId.parse("spiffe://a.org/w")
    assert w.parsed_spiffe_id is w.parsed_spiffe_id  # parsed once
    local = localize(t.build(), LocalSettings(uid=7)).workloads[0]
    assert local.parsed_spiffe_id == SpiffeId.parse("spiffe://a.org/w")
    # a copy with another ID parses its own, by replace or by localize's copy
    other = SpiffeId.parse("spiffe://a.org/other")
    assert dataclasses.replace(w, spiffe_id=str(other)).parsed_spiffe_id == other
    assert _with(w, spiffe_id=str(other)).parsed_spiffe_id == other
    assert w == dataclasses.replace(w)  # the kept value is no field
