"""One test per validation rule: bad input in, a message naming the field and why out."""

from __future__ import annotations

import dataclasses

import pytest

from spire_fabric.topology import (
    DiskUpstreamAuthority,
    IntermediateCa,
    MySqlDatastore,
    RootCa,
    ServerKubernetes,
    SpireUpstreamAuthority,
    Topology,
    TopologyBuilder,
    TopologyError,
    WorkloadKubernetes,
    preset,
    validate_topology,
)


def problems_of(topology_or_builder) -> list[str]:
    with pytest.raises(TopologyError) as info:
        if isinstance(topology_or_builder, Topology):
            validate_topology(topology_or_builder)
        else:
            topology_or_builder.build()
    return [str(p) for p in info.value.problems]


def only(problems: list[str], prefix: str) -> str:
    hits = [p for p in problems if p.startswith(prefix)]
    assert hits, f"no problem at {prefix}; got {problems}"
    return hits[0]


def test_sound_topology_builds(builder):
    assert builder.build().name == "t"


def test_invalid_trust_domain_is_named():
    b = TopologyBuilder("t").trust_domain("Bad_Domain!")
    msg = only(problems_of(b), "trust_domains[0]")
    assert "invalid trust domain" in msg


def test_spiffe_id_given_as_trust_domain_is_rejected():
    b = TopologyBuilder("t").trust_domain("spiffe://a.org")
    assert "bare trust domain" in only(problems_of(b), "trust_domains[0]")


def test_invalid_workload_spiffe_id_is_named(builder):
    t = builder.build(validate=False)
    bad = dataclasses.replace(t.workloads[0], spiffe_id="spiffe://a.org/bad/../path")
    msg = only(problems_of(dataclasses.replace(t, workloads=(bad,))), "workloads[app].spiffe_id")
    assert "dot segments" in msg


def test_duplicate_server_names_are_rejected(builder):
    builder.server("srv-a", "a.org", host="127.0.0.3")
    assert "used 2 times" in only(problems_of(builder), "servers[srv-a]")


def test_port_collision_on_same_host_is_rejected(builder):
    builder.agent("agent-b", "srv-a", health_port=8081)
    msg = only(problems_of(builder), "agents[agent-b].health_port")
    assert "port collision on 127.0.0.1:8081" in msg
    assert "servers[srv-a].ports.api" in msg


def test_same_port_on_different_hosts_is_fine(builder):
    t = builder.build()
    assert t.server("srv-a").ports.api == t.server("srv-b").ports.api == 8081


def test_node_port_collision_is_rejected():
    t = preset("enterprise")
    up = t.server("spire-upstream-server")
    k = dataclasses.replace(
        up.kubernetes,
        node_ports=dataclasses.replace(up.kubernetes.node_ports, federation=32443),
    )
    servers = (dataclasses.replace(up, kubernetes=k), t.servers[1])
    msg = only(
        problems_of(dataclasses.replace(t, servers=servers)),
        "servers[spire-upstream-server].kubernetes.node_ports.federation",
    )
    assert "collision on NodePort" in msg


def test_federation_with_unknown_trust_domain_is_rejected(builder):
    builder.federation("srv-a", "c.org", endpoint_url="https://c.example:8443")
    assert "not declared" in only(problems_of(builder), "federations[srv-a->c.org].trust_domain")


def test_federation_with_own_trust_domain_is_rejected(builder):
    builder.federation("srv-a", "a.org")
    msg = only(problems_of(builder), "federations[srv-a->a.org].trust_domain")
    assert "its own trust domain" in msg


def test_federation_profile_must_match_bundle_endpoint(builder):
    builder.federation("srv-a", "b.org", profile="https_web")
    problems = problems_of(builder)
    assert "does not match" in only(problems, "federations[srv-a->b.org].profile")


def test_invalid_bundle_endpoint_profile_names_the_field(builder):
    t = builder.build(validate=False)
    srv = t.server("srv-a")
    bad = dataclasses.replace(
        srv, bundle_endpoint=dataclasses.replace(srv.bundle_endpoint, profile="https_nope")
    )
    t = dataclasses.replace(t, servers=(bad, t.servers[1]))
    assert "not a SPIRE bundle endpoint profile" in only(
        problems_of(t), "servers[srv-a].bundle_endpoint.profile"
    )


def test_spire_upstream_across_trust_domains_is_explained(builder):
    builder.agent("agent-b", "srv-b")
    t = builder.build(validate=False)
    nested = dataclasses.replace(
        t.server("srv-a"),
        upstream_authority=SpireUpstreamAuthority(server="srv-b", agent="agent-b"),
    )
    t = dataclasses.replace(t, servers=(nested, t.servers[1]))
    msg = only(problems_of(t), "servers[srv-a].upstream_authority.server")
    assert "only works within one trust domain" in msg
    assert "disk upstream authority" in msg and "federation" in msg


def test_workload_with_unknown_agent_is_rejected(builder):
    builder.workload("ghost", "spiffe://a.org/ghost", agent="nobody", selectors=["unix:uid:1"])
    assert "unknown agent 'nobody'" in only(problems_of(builder), "workloads[ghost].agent")


def test_workload_id_outside_its_servers_trust_domain_is_rejected(builder):
    builder.workload("stray", "spiffe://b.org/stray", agent="agent-a", selectors=["unix:uid:1"])
    msg = only(problems_of(builder), "workloads[stray].spiffe_id")
    assert "not in trust domain 'a.org'" in msg


def test_svid_ttl_longer_than_ca_ttl_is_rejected(builder):
    builder.workload(
        "long",
        "spiffe://a.org/long",
        agent="agent-a",
        selectors=["unix:uid:1"],
        x509_svid_ttl="25h",
    )
    msg = only(problems_of(builder), "workloads[long].x509_svid_ttl")
    assert "25h is longer than the CA TTL 24h" in msg


def test_server_default_svid_ttl_longer_than_ca_ttl_is_rejected():
    b = (
        TopologyBuilder("t")
        .trust_domain("a.org")
        .server("s", "a.org", ca_ttl="1h", default_jwt_svid_ttl="2h")
    )
    assert "longer than the CA TTL" in only(problems_of(b), "servers[s].default_jwt_svid_ttl")


def test_mysql_dsn_without_parse_time_is_rejected():
    b = (
        TopologyBuilder("t")
        .trust_domain("a.org")
        .server("s", "a.org", datastore=MySqlDatastore("spire:pw@tcp(db:3306)/spire"))
    )
    assert "parseTime=true" in only(problems_of(b), "servers[s].datastore.dsn")


def test_selector_of_attestor_the_agent_does_not_run_is_rejected(builder):
    builder.workload("pod", "spiffe://a.org/pod", agent="agent-a", selectors=["k8s:ns:x"])
    msg = only(problems_of(builder), "workloads[pod].selectors")
    assert "needs the 'k8s' workload attestor" in msg and "runs only unix" in msg


def test_malformed_selector_is_rejected(builder):
    builder.workload("pod", "spiffe://a.org/pod", agent="agent-a", selectors=["uid1000"])
    assert "type:value" in only(problems_of(builder), "workloads[pod].selectors")


def test_federates_with_requires_a_federation_relationship():
    b = (
        TopologyBuilder("t")
        .trust_domain("a.org")
        .trust_domain("b.org")
        .server("srv-a", "a.org")
        .server("srv-b", "b.org", host="127.0.0.2")
        .agent("agent-a", "srv-a")
        .workload(
            "app",
            "spiffe://a.org/app",
            agent="agent-a",
            selectors=["unix:uid:1"],
            federates_with=["b.org"],
        )
    )
    msg = only(problems_of(b), "workloads[app].federates_with[0]")
    assert "no federation relationship with 'b.org'" in msg


def test_disk_upstream_authority_must_name_an_intermediate_of_its_trust_domain(builder):
    builder.ca(RootCa(), [IntermediateCa("b-int", "b.org", "B Intermediate")])
    t = builder.build(validate=False)
    srv = dataclasses.replace(t.server("srv-a"), upstream_authority=DiskUpstreamAuthority("b-int"))
    t = dataclasses.replace(t, servers=(srv, t.servers[1]))
    msg = only(problems_of(t), "servers[srv-a].upstream_authority.ca")
    assert "constrained to 'b.org'" in msg


def test_server_host_must_be_an_ip(builder):
    builder.server("srv-c", "a.org", host="localhost")
    assert "not an IP address" in only(problems_of(builder), "servers[srv-c].host")


def test_unknown_cluster_namespace_is_rejected():
    b = (
        TopologyBuilder("t")
        .trust_domain("a.org")
        .cluster("c1", ["spire"])
        .server("s", "a.org", kubernetes=ServerKubernetes(cluster="c1", namespace="nope"))
    )
    assert "not declared in cluster 'c1'" in only(problems_of(b), "servers[s].kubernetes.namespace")


def test_node_port_outside_range_is_rejected(builder):
    builder.workload(
        "web",
        "spiffe://a.org/web",
        agent="agent-a",
        selectors=["unix:uid:1"],
        kubernetes=WorkloadKubernetes("default", "web", node_port=8080),
    )
    msg = only(problems_of(builder), "workloads[web].kubernetes.node_port")
    assert "30000-32767" in msg


@pytest.mark.parametrize("storage", ["64", "64mb", "-1Gi", "0Mi", "1 Gi"])
def test_workload_storage_must_be_a_size(builder, storage):
    builder.workload(
        "web",
        "spiffe://a.org/web",
        agent="agent-a",
        selectors=["unix:uid:1"],
        kubernetes=WorkloadKubernetes("default", "web", storage=storage),
    )
    msg = only(problems_of(builder), "workloads[web].kubernetes.storage")
    assert repr(storage) in msg and "64Mi or 1Gi" in msg


def _in_namespace(t, server=None, workload=None, namespace="spire-agents"):
    """``t`` with one server's or workload's Kubernetes namespace moved."""
    if server is not None:
        s = t.server(server)
        moved = dataclasses.replace(
            s, kubernetes=dataclasses.replace(s.kubernetes, namespace=namespace)
        )
        return dataclasses.replace(
            t, servers=tuple(moved if x.name == server else x for x in t.servers)
        )
    w = t.workload(workload)
    moved_w = dataclasses.replace(
        w, kubernetes=dataclasses.replace(w.kubernetes, namespace=namespace)
    )
    return dataclasses.replace(
        t, workloads=tuple(moved_w if x.name == workload else x for x in t.workloads)
    )


def test_server_in_the_agents_privileged_namespace_is_rejected():
    t = _in_namespace(preset("basic"), server="spire-server")
    msg = only(problems_of(t), "servers[spire-server].kubernetes.namespace")
    assert "hosts agents and is therefore privileged" in msg


def test_workload_in_the_agents_privileged_namespace_is_rejected():
    t = _in_namespace(preset("basic"), workload="example-app")
    msg = only(problems_of(t), "workloads[example-app].kubernetes.namespace")
    assert "hosts agents and is therefore privileged" in msg


def test_two_servers_publishing_one_bundle_configmap_into_one_namespace_are_rejected():
    t = preset("nested")
    child = t.server("spire-child-server")
    same_name = dataclasses.replace(
        child, kubernetes=dataclasses.replace(child.kubernetes, bundle_configmap="spire-bundle")
    )
    t = dataclasses.replace(t, servers=(t.servers[0], same_name))
    msg = only(problems_of(t), "servers[spire-child-server].kubernetes.bundle_configmap")
    assert "'spire-root-server' already publishes" in msg and "'spire-agents'" in msg


def test_namespace_rbac_forbids_psat_agents():
    t = preset("basic")
    t = dataclasses.replace(t, kubernetes=dataclasses.replace(t.kubernetes, rbac="namespace"))
    msg = only(problems_of(t), "agents[spire-agent].kubernetes.node_attestor")
    assert "cluster-scoped RBAC" in msg


def test_every_problem_is_reported_at_once(builder):
    builder.workload("x", "spiffe://b.org/x", agent="nobody", selectors=["k8s:ns:x"])
    builder.server("srv-a", "a.org", host="127.0.0.9")
    problems = problems_of(builder)
    assert any(p.startswith("workloads[x].agent") for p in problems)
    assert any(p.startswith("servers[srv-a]:") for p in problems)


def test_error_message_lists_field_paths():
    b = TopologyBuilder("t").trust_domain("a.org").server("s", "b.org")
    with pytest.raises(TopologyError) as info:
        b.build()
    assert "servers[s].trust_domain: trust domain 'b.org' is not declared" in str(info.value)
    assert isinstance(info.value, ValueError)


def _with_workload(t, name, **changes):
    w = dataclasses.replace(t.workload(name), **changes)
    return dataclasses.replace(t, workloads=tuple(w if x.name == name else x for x in t.workloads))


def test_workload_in_a_server_namespace_is_rejected_naming_workload_namespace_and_server():
    # the enterprise preset as it was: upstream-client beside the upstream CA key
    t = _in_namespace(preset("enterprise"), workload="upstream-client", namespace="spire-upstream")
    msg = only(problems_of(t), "workloads[upstream-client].kubernetes.namespace")
    assert "workload 'upstream-client'" in msg
    assert "namespace 'spire-upstream'" in msg
    assert "server 'spire-upstream-server'" in msg


def test_registered_workload_selecting_a_server_namespace_is_rejected():
    # no pods of ours, but pods a user starts in spire-downstream would get this identity
    t = _with_workload(
        preset("enterprise"),
        "data-processor",
        selectors=("k8s:ns:spire-downstream", "k8s:sa:data-processor"),
    )
    msg = only(problems_of(t), "workloads[data-processor].selectors")
    assert "namespace 'spire-downstream'" in msg and "server 'spire-downstream-server'" in msg


def test_the_nested_server_workload_may_be_in_its_own_servers_namespace():
    t = preset("nested")
    w = t.workload("spire-child-server")
    assert w.downstream and "k8s:ns:spire-child" in w.selectors
    assert validate_topology(t) is t


def test_a_downstream_workload_is_not_the_server_unless_it_holds_that_servers_upstream():
    t = preset("nested")
    # a downstream entry for pods of the root server's namespace is not the child server
    in_root = _with_workload(
        t, "spire-child-server", selectors=("k8s:ns:spire-root", "k8s:sa:spire-server")
    )
    msg = only(problems_of(in_root), "workloads[spire-child-server].selectors")
    assert "server 'spire-root-server'" in msg
    # nor is a workload in the child's namespace that is not downstream
    not_downstream = _with_workload(t, "spire-child-server", downstream=False)
    msg = only(problems_of(not_downstream), "workloads[spire-child-server].selectors")
    assert "namespace 'spire-child'" in msg and "server 'spire-child-server'" in msg
