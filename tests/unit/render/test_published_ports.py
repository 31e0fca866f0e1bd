"""Publish only what something uses: NodePorts, node attestors, and the plan's listing of
every published port (issue 27, item 3)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from spire_fabric.deploy._output import print_plan
from spire_fabric.render import RenderPaths, render_agent_config, render_mermaid
from spire_fabric.render import render_server_config as server_conf
from spire_fabric.render.kubernetes import render_kubernetes_objects
from spire_fabric.runtime.deployment import DeploymentPlan
from spire_fabric.topology import (
    PRESET_NAMES,
    TARGETS,
    AgentKubernetes,
    K8sPsatAttestor,
    Topology,
    agent_node_attestor,
    preset,
    published_ports,
    server_address_for,
    validate_topology,
)

K8S = RenderPaths.kubernetes()
LOCAL = RenderPaths.local("/state")


def _node_ports(topology: Topology) -> set[tuple[str, int | None]]:
    """(cluster, nodePort) of every port of every rendered NodePort Service: what the
    clusters really publish. Kubernetes gives a port of such a Service that names no
    nodePort a random one (None here): published all the same."""
    return {
        (o["metadata"]["labels"]["spire-fabric.io/cluster"], p.get("nodePort"))
        for o in render_kubernetes_objects(topology)
        if o["kind"] == "Service" and o["spec"]["type"] == "NodePort"
        for p in o["spec"]["ports"]
    }


def _with_upstream_agent_in_the_other_cluster() -> Topology:
    """enterprise, with upstream-agent moved to downstream-cluster: it must then dial the
    upstream server's API NodePort."""
    t = preset("enterprise")
    up = t.server("spire-upstream-server")
    psat = K8sPsatAttestor(("upstream-cluster", "downstream-cluster"))
    up = dataclasses.replace(up, node_attestors=(*up.node_attestors[:1], psat))
    agent = t.agent("upstream-agent")
    moved = AgentKubernetes(cluster="downstream-cluster", namespace="spire-downstream-agents")
    agent = dataclasses.replace(agent, kubernetes=moved)
    servers = tuple(up if s.name == up.name else s for s in t.servers)
    agents = tuple(agent if a.name == agent.name else a for a in t.agents)
    # without workloads, nothing for monitoring's GatewayErrors to watch
    t = dataclasses.replace(t, servers=servers, agents=agents, workloads=(), monitoring=None)
    validate_topology(t)
    return t


def test_enterprise_publishes_no_server_api_node_port():
    # agents dial the Service's DNS name, the installer a port-forward: nobody needs them
    assert _node_ports(preset("enterprise")) == {
        ("upstream-cluster", 31443),
        ("downstream-cluster", 32443),
        ("downstream-cluster", 30080),
        # the upstream cluster's Prometheus, federated by the downstream one's
        ("upstream-cluster", 30090),
    }
    services = {
        o["metadata"]["name"]: o
        for o in render_kubernetes_objects(preset("enterprise"))
        if o["kind"] == "Service"
    }
    # agents dial the ClusterIP Service; only the bundle endpoint is on a NodePort one
    assert services["spire-upstream-server"]["spec"]["type"] == "ClusterIP"
    published = services["spire-upstream-server-nodeports"]["spec"]["ports"]
    assert [(p["name"], p["nodePort"]) for p in published] == [("federation", 31443)]


def test_an_agent_in_another_cluster_gets_the_api_node_port_it_dials():
    t = _with_upstream_agent_in_the_other_cluster()
    assert ("upstream-cluster", 31081) in _node_ports(t)
    assert server_address_for(t, t.agent("upstream-agent"), "kubernetes") == (
        "upstream-cluster-control-plane",
        31081,
    )
    listed = [str(p) for p in published_ports(t, "kubernetes") if p.port == 31081]
    assert listed == [
        "31081/TCP spire-upstream-server SPIRE Server API — agents upstream-agent (node "
        "attestation by k8s_psat, then mTLS with their SVID) [upstream-cluster]"
    ]
    assert "NodePorts API 31081 · federation 31443" in render_mermaid(t)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_the_plan_lists_exactly_the_node_ports_the_manifests_publish(name):
    t = preset(name)
    listed = {(p.where, p.port) for p in published_ports(t, "kubernetes")}
    assert listed == _node_ports(t)


def test_the_plan_lists_every_published_port_of_enterprise_with_its_callers(capsys):
    t = preset("enterprise")
    from rich.console import Console

    plan = DeploymentPlan("enterprise", "kubernetes", published=published_ports(t, "kubernetes"))
    print_plan(plan, Console(width=400, force_terminal=False))
    out = capsys.readouterr().out
    spiffe = "any federated peer (SPIFFE auth of the server; the bundle is public)"
    for line in (
        f"31443/TCP spire-upstream-server federation bundle endpoint — {spiffe} [upstream-cluster]",
        f"32443/TCP spire-downstream-server federation bundle endpoint — {spiffe} "
        "[downstream-cluster]",
        "30080/TCP security-gateway workload — external clients (authenticated by the "
        "workload itself) [downstream-cluster]",
    ):
        assert f"  {line}\n" in out
    assert "31081" not in out and "32081" not in out
    assert '"port": 31443' in plan.to_json()


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_the_local_listing_has_every_port_the_local_configs_listen_on(name):
    t = preset(name)
    confs = [server_conf(t, s.name, LOCAL) for s in t.servers]
    confs += [render_agent_config(t, a.name, LOCAL) for a in t.agents]
    in_configs = {int(p) for c in confs for p in re.findall(r'\b(?:bind_)?port = "?(\d+)', c)}
    in_configs |= {w.run.port for w in t.workloads if w.run and w.run.port}
    # the workloads' /metrics listeners and Prometheus/Alertmanager (their command lines)
    in_configs |= {w.run.metrics_port for w in t.workloads if w.run and w.run.metrics_port}
    if t.monitoring is not None:
        in_configs |= {t.monitoring.prometheus_port, t.monitoring.alertmanager_port}
    listed = {p.port for p in published_ports(t, "local")}
    assert in_configs and listed == in_configs


def _attestors(conf: str) -> set[str]:
    return set(re.findall(r'NodeAttestor "(\w+)"', conf))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_no_server_enables_an_attestor_none_of_its_agents_uses(name, target):
    t = preset(name)
    paths = K8S if target == "kubernetes" else LOCAL
    for s in t.servers:
        used = {agent_node_attestor(a, target) for a in t.agents_of(s.name)}
        assert _attestors(server_conf(t, s.name, paths)) == used, s.name


def test_kubernetes_servers_of_psat_agents_refuse_join_tokens():
    for name in ("enterprise", "basic", "nested"):
        t = preset(name)
        for s in t.servers:
            assert _attestors(server_conf(t, s.name, K8S)) == {"k8s_psat"}, (name, s.name)
    t = preset("crd-free")  # its agent attests with a join token on Kubernetes too
    assert _attestors(server_conf(t, "spire-server", K8S)) == {"join_token"}


def test_local_servers_keep_join_token_only():
    for name in PRESET_NAMES:
        t = preset(name)
        for s in t.servers:
            assert _attestors(server_conf(t, s.name, LOCAL)) == {"join_token"}


def test_k8s_psat_lists_only_the_clusters_its_agents_attest_from():
    # SPIRE refuses a k8s_psat cluster with an empty service-account allow list, and a
    # cluster nobody attests from is a door for nobody
    t = _with_upstream_agent_in_the_other_cluster()
    conf = server_conf(t, "spire-upstream-server", K8S)
    assert '"downstream-cluster" = {' in conf and '"upstream-cluster" = {' not in conf
    assert _attestors(conf) == {"k8s_psat"}
