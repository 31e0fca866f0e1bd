"""The enterprise preset keeps the names and numbers of DESIGN.md."""

from __future__ import annotations

from datetime import timedelta

import pytest

from spire_fabric.identity import TrustDomain
from spire_fabric.topology import (
    PRESET_NAMES,
    DiskUpstreamAuthority,
    SpireUpstreamAuthority,
    agent_namespaces,
    controller_manager_enabled,
    preset,
)


def test_enterprise_names_and_numbers_match_the_design():
    t = preset("enterprise")
    # trust domains are typed in the model (TrustDomain), written as names in YAML
    assert [str(td.name) for td in t.trust_domains] == [
        "enterprise-root.org",
        "downstream.example.org",
    ]
    assert all(isinstance(td.name, TrustDomain) for td in t.trust_domains)
    up, down = t.server("spire-upstream-server"), t.server("spire-downstream-server")
    assert (up.kubernetes.namespace, down.kubernetes.namespace) == (
        "spire-upstream",
        "spire-downstream",
    )
    for s in (up, down):
        assert (s.ports.api, s.ports.health, s.ports.federation) == (8081, 8080, 8443)
        assert s.bundle_endpoint.profile == "https_spiffe"
        assert isinstance(s.upstream_authority, DiskUpstreamAuthority)
        assert controller_manager_enabled(t, s)
    assert (up.kubernetes.node_ports.api, up.kubernetes.node_ports.federation) == (31081, 31443)
    assert (down.kubernetes.node_ports.api, down.kubernetes.node_ports.federation) == (
        32081,
        32443,
    )
    assert t.workload("security-gateway").kubernetes.node_port == 30080
    assert (up.default_x509_svid_ttl, up.default_jwt_svid_ttl) == (
        timedelta(hours=6),
        timedelta(minutes=30),
    )
    assert (down.default_x509_svid_ttl, down.default_jwt_svid_ttl) == (
        timedelta(hours=4),
        timedelta(minutes=15),
    )


def test_enterprise_workloads_federate_with_the_upstream_trust_domain():
    t = preset("enterprise")
    for name in ("enterprise-api", "data-processor", "security-gateway"):
        w = t.workload(name)
        assert w.spiffe_id == f"spiffe://downstream.example.org/ns/downstream-workloads/sa/{name}"
        assert w.federates_with == (TrustDomain("enterprise-root.org"),)
    # three workload agents of the source design, and inventory's own (its ghostunnel
    # cannot pick an SVID among several, see localize._proxies_alone)
    assert len(t.agents_of("spire-downstream-server")) == 5
    assert [w.name for w in t.workloads if w.agent == "downstream-agent-4"] == ["inventory"]
    assert [w.name for w in t.workloads if w.agent == "downstream-agent-5"] == ["api-poller"]
    client = t.workload("upstream-client")
    # its own namespace, not the upstream server's (which holds the CA key)
    assert client.kubernetes.namespace == "upstream-workloads"
    assert client.spiffe_id == "spiffe://enterprise-root.org/ns/upstream-workloads/sa/upstream-client"
    assert client.selectors == ("k8s:ns:upstream-workloads", "k8s:sa:upstream-client")
    assert client.federates_with == (TrustDomain("downstream.example.org"),)


def test_enterprise_intermediates_are_constrained_to_their_trust_domains():
    t = preset("enterprise")
    assert t.ca.root.common_name == "Enterprise Root CA"
    by_td = {i.trust_domain: i for i in t.ca.intermediates}
    for s in t.servers:
        assert s.upstream_authority.ca == by_td[s.trust_domain].name
        assert by_td[s.trust_domain].permitted_uri_domain == s.trust_domain.name


def test_nested_preset_nests_within_one_trust_domain():
    t = preset("nested")
    child = t.server("spire-child-server")
    assert isinstance(child.upstream_authority, SpireUpstreamAuthority)
    assert t.server(child.upstream_authority.server).trust_domain == child.trust_domain
    assert any(w.downstream for w in t.workloads)


def test_crd_free_preset_turns_off_controller_manager_and_cluster_rbac():
    t = preset("crd-free")
    assert t.kubernetes.registration == "spire-api"
    assert t.kubernetes.rbac == "namespace"
    assert not any(controller_manager_enabled(t, s) for s in t.servers)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_cluster_keeps_its_agents_in_one_namespace_of_their_own(name):
    t = preset(name)
    for c in t.clusters:
        agent_ns = agent_namespaces(t, c.name)
        assert len(agent_ns) == 1, (c.name, agent_ns)
        assert agent_ns[0].endswith("-agents")
        others = {s.kubernetes.namespace for s in t.servers if s.kubernetes.cluster == c.name}
        others |= {
            w.kubernetes.namespace
            for w in t.workloads
            if w.kubernetes is not None and t.agent(w.agent).kubernetes.cluster == c.name
        }
        assert agent_ns[0] not in others


def test_enterprise_agents_run_in_per_cluster_agent_namespaces():
    t = preset("enterprise")
    assert {a.name: a.kubernetes.namespace for a in t.agents} == {
        "upstream-agent": "spire-upstream-agents",
        "downstream-agent-1": "spire-downstream-agents",
        "downstream-agent-2": "spire-downstream-agents",
        "downstream-agent-3": "spire-downstream-agents",
        "downstream-agent-4": "spire-downstream-agents",
        "downstream-agent-5": "spire-downstream-agents",
    }
    assert t.cluster("downstream-cluster").namespaces == (
        "spire-downstream",
        "spire-downstream-agents",
        "downstream-workloads",
    )
