"""SPIRE's Prometheus telemetry: rendered for every server and agent, on loopback locally,
at ports that move with --port-base like every other local port."""

from __future__ import annotations

from spire_fabric.render import RenderPaths, render_agent_config, render_server_config
from spire_fabric.runtime.local.localize import LocalSettings, localize
from spire_fabric.topology import preset


def test_local_telemetry_ports_move_with_the_port_base() -> None:
    local = localize(preset("enterprise"), LocalSettings(port_base=45000))
    upstream = local.server("spire-upstream-server")
    assert upstream.ports.api == 45081 and upstream.ports.telemetry == 45079
    assert local.server("spire-downstream-server").ports.telemetry == 46079
    assert [a.telemetry_port for a in local.agents] == [22280, 22281, 22282, 22283, 22284, 22285]


def test_server_and_agent_configs_expose_prometheus_on_their_port() -> None:
    topology = preset("enterprise")
    paths = RenderPaths.kubernetes()
    server = render_server_config(topology, "spire-upstream-server", paths)
    assert 'telemetry {\n    Prometheus {\n        host = "0.0.0.0"\n        port = 9988' in server
    agent = render_agent_config(topology, "downstream-agent-2", paths)
    assert "Prometheus {" in agent and "port = 8282" in agent
