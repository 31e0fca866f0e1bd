"""The agent's kubelet settings (``kubelet_verification``, ``kubelet_ca_host_path``,
``kubelet_access``): read from YAML, and every wrong value refused naming its field."""

from __future__ import annotations

import dataclasses

import pytest

from spire_fabric.topology import (
    Topology,
    TopologyError,
    dump_topology,
    load_topology,
    preset,
    validate_topology,
)

AGENT = "agents[upstream-agent].kubernetes"


def with_upstream_agent(**kubernetes: object) -> Topology:
    t = preset("enterprise")
    agents = tuple(
        dataclasses.replace(a, kubernetes=dataclasses.replace(a.kubernetes, **kubernetes))
        if a.name == "upstream-agent" and a.kubernetes is not None
        else a
        for a in t.agents
    )
    return dataclasses.replace(t, agents=agents)


def problems(t: Topology) -> list[str]:
    with pytest.raises(TopologyError) as info:
        validate_topology(t)
    return [str(p) for p in info.value.problems]


def test_defaults_verify_against_the_service_account_ca_and_ask_for_nodes_pods() -> None:
    (a, *_) = preset("enterprise").agents
    assert a.kubernetes is not None
    assert a.kubernetes.kubelet_verification == "service-account-ca"
    assert a.kubernetes.kubelet_ca_host_path is None
    assert a.kubernetes.kubelet_access == "nodes/pods"


def test_the_settings_round_trip_through_yaml() -> None:
    t = validate_topology(with_upstream_agent(
        kubelet_verification="host-ca", kubelet_ca_host_path="/etc/kubernetes/pki/ca.crt",
        kubelet_access="nodes/proxy"))  # fmt: skip
    text = dump_topology(t)
    assert "kubelet_ca_host_path: /etc/kubernetes/pki/ca.crt" in text
    assert load_topology(text) == t


@pytest.mark.parametrize(
    ("field", "default", "value", "message"),
    [
        ("kubelet_verification", "service-account-ca", "none",
         "'none' is not one of: service-account-ca, host-ca, skip"),
        ("kubelet_access", "nodes/pods", "nodes/exec",
         "'nodes/exec' is not one of: nodes/pods, nodes/proxy"),
    ],
)  # fmt: skip
def test_an_unknown_mode_in_yaml_names_the_field(
    field: str, default: str, value: str, message: str
) -> None:
    text = dump_topology(preset("enterprise"))
    assert f"{field}: {default}\n" in text
    with pytest.raises(TopologyError) as info:
        load_topology(text.replace(f"{field}: {default}\n", f"{field}: {value}\n", 1))
    (p,) = info.value.problems
    assert p.path.startswith("agents[") and p.path.endswith(f".kubernetes.{field}"), p.path
    assert message in p.message


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"kubelet_verification": "none"}, "kubelet_verification", "'none' is not one of"),
        ({"kubelet_access": "nodes/log"}, "kubelet_access", "'nodes/log' is not one of"),
        ({"kubelet_verification": "host-ca"}, "kubelet_ca_host_path",
         "kubelet_verification host-ca needs the CA file's path on the nodes"),
        ({"kubelet_verification": "host-ca", "kubelet_ca_host_path": "pki/ca.crt"},
         "kubelet_ca_host_path", "'pki/ca.crt' is not an absolute file path"),
        ({"kubelet_verification": "host-ca", "kubelet_ca_host_path": "/etc/pki/"},
         "kubelet_ca_host_path", "'/etc/pki/' is not an absolute file path"),
        ({"kubelet_ca_host_path": "/etc/pki/ca.crt"}, "kubelet_ca_host_path",
         "is only read with kubelet_verification host-ca (it is 'service-account-ca')"),
    ],
)  # fmt: skip
def test_a_wrong_setting_is_refused_naming_its_field(
    settings: dict[str, str], field: str, message: str
) -> None:
    (p,) = problems(with_upstream_agent(**settings))
    assert p.startswith(f"{AGENT}.{field}: ")
    assert message in p
