from __future__ import annotations

import dataclasses
import re

import pytest

from spire_fabric.render import (
    RenderPaths,
    render_agent_config,
    render_mermaid,
    render_server_config,
)
from spire_fabric.topology import PRESET_NAMES, TARGETS, MySqlDatastore, Topology, preset

LOCAL = RenderPaths.local("/state")
K8S = RenderPaths.kubernetes()


@pytest.mark.parametrize("paths", [LOCAL, K8S])
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_rendering_is_deterministic(name, paths):
    a, b = preset(name), preset(name)
    for s in a.servers:
        assert render_server_config(a, s.name, paths) == render_server_config(b, s.name, paths)
    for ag in a.agents:
        assert render_agent_config(a, ag.name, paths) == render_agent_config(b, ag.name, paths)
    assert render_mermaid(a) == render_mermaid(b)


def test_server_config_carries_the_design_ttls_and_federation():
    conf = render_server_config(preset("enterprise"), "spire-downstream-server", LOCAL)
    assert 'default_x509_svid_ttl = "4h"' in conf
    assert 'default_jwt_svid_ttl = "15m"' in conf
    assert 'federates_with "enterprise-root.org"' in conf
    assert 'bundle_endpoint_url = "https://127.0.0.1:8443"' in conf
    assert 'endpoint_spiffe_id = "spiffe://enterprise-root.org/spire/server"' in conf
    assert 'profile "https_spiffe" {}' in conf


def test_local_target_uses_sqlite_and_kubernetes_target_uses_mysql():
    t = preset("enterprise")
    local = render_server_config(t, "spire-upstream-server", LOCAL)
    k8s = render_server_config(t, "spire-upstream-server", K8S)
    assert 'database_type = "sqlite3"' in local
    assert 'database_type = "mysql"' in k8s and "parseTime=true" in k8s


def test_kubernetes_target_publishes_bundle_and_attests_with_psat():
    t = preset("enterprise")
    conf = render_server_config(t, "spire-downstream-server", K8S)
    publisher = conf[conf.index('BundlePublisher "k8s_configmap"') :]
    assert re.findall(r'namespace\s*=\s*"([^"]+)"', publisher) == ["spire-downstream-agents"]
    assert 'service_account_allow_list = ["spire-downstream-agents:spire-agent"]' in conf
    assert "k8s_psat" not in render_server_config(t, "spire-downstream-server", LOCAL)
    agent = render_agent_config(t, "downstream-agent-1", K8S)
    assert 'NodeAttestor "k8s_psat"' in agent and 'cluster = "downstream-cluster"' in agent
    assert 'server_address = "spire-downstream-server.spire-downstream.svc"' in agent


def _without_controller_manager(t: Topology, *servers: str) -> Topology:
    return dataclasses.replace(
        t,
        servers=tuple(
            dataclasses.replace(
                s, kubernetes=dataclasses.replace(s.kubernetes, controller_manager=False)
            )
            if s.name in servers
            else s
            for s in t.servers
        ),
    )


@pytest.mark.parametrize("server", ["spire-upstream-server", "spire-downstream-server"])
def test_controller_manager_owns_federation_so_kubernetes_server_conf_omits_federates_with(server):
    t = preset("enterprise")
    conf = render_server_config(t, server, K8S)
    assert "federates_with" not in conf
    assert "bundle_endpoint {" in conf and 'profile "https_spiffe" {}' in conf
    assert "port = 8443" in conf


@pytest.mark.parametrize("server", ["spire-upstream-server", "spire-downstream-server"])
def test_local_server_conf_keeps_federates_with(server):
    t = preset("enterprise")
    other = {"spire-upstream-server": "downstream.example.org"}.get(server, "enterprise-root.org")
    conf = render_server_config(t, server, LOCAL)
    assert f'federates_with "{other}"' in conf and "bundle_endpoint {" in conf


def test_server_without_controller_manager_federates_through_its_config_via_node_ports():
    t = _without_controller_manager(preset("enterprise"), "spire-upstream-server")
    up = render_server_config(t, "spire-upstream-server", K8S)
    assert 'federates_with "downstream.example.org"' in up
    assert 'bundle_endpoint_url = "https://downstream-cluster-control-plane:32443"' in up
    # the other server still has its controller manager, which keeps the relationship
    assert "federates_with" not in render_server_config(t, "spire-downstream-server", K8S)


def test_local_agent_attests_with_join_token_and_no_kubelet_attestor():
    conf = render_agent_config(preset("enterprise"), "downstream-agent-2", LOCAL)
    assert 'NodeAttestor "join_token"' in conf
    assert 'WorkloadAttestor "k8s"' not in conf
    assert "join_token =" not in conf  # the token goes on the command line
    assert 'trust_bundle_path = "/state/agents/downstream-agent-2/bootstrap/bundle.crt"' in conf


def test_insecure_bootstrap_replaces_trust_bundle_path():
    paths = RenderPaths.local("/state", insecure_bootstrap=True)
    conf = render_agent_config(preset("basic"), "spire-agent", paths)
    assert "insecure_bootstrap = true" in conf and "trust_bundle_path" not in conf


def test_nested_server_points_at_upstream_server_and_agent_socket():
    conf = render_server_config(preset("nested"), "spire-child-server", LOCAL)
    assert 'UpstreamAuthority "spire"' in conf
    assert 'server_address = "127.0.0.1"' in conf and 'server_port = "8081"' in conf
    assert 'workload_api_socket = "/state/agents/root-agent/public/api.sock"' in conf


def test_disk_upstream_authority_points_at_the_trust_domains_intermediate():
    conf = render_server_config(preset("enterprise"), "spire-downstream-server", LOCAL)
    assert 'cert_file_path = "/state/ca/downstream-regional-intermediate.crt"' in conf
    assert 'bundle_file_path = "/state/ca/enterprise-root-ca.crt"' in conf


def test_strings_are_escaped_in_hcl():
    t = preset("basic")
    s = dataclasses.replace(t.servers[0], datastore=MySqlDatastore('u:p"w@tcp(h)/d?parseTime=true'))
    conf = render_server_config(dataclasses.replace(t, servers=(s,)), "spire-server", LOCAL)
    assert 'connection_string = "u:p\\"w@tcp(h)/d?parseTime=true"' in conf


@pytest.mark.parametrize("target", TARGETS)
def test_mermaid_shows_trust_domains_ports_and_federation(target):
    text = render_mermaid(preset("enterprise"))
    assert text.startswith("flowchart LR\n")
    assert 'subgraph td_enterprise_root_org["trust domain enterprise-root.org"]' in text
    assert "NodePorts federation 31443" in text and "API 31081" not in text  # not published
    assert "NodePort 30080" in text
    assert (
        "srv_spire_upstream_server <-->|federation https_spiffe| srv_spire_downstream_server"
        in (text)
    )
    assert "spire-controller-manager" in text and "MySQL spire-upstream-mysql" in text
