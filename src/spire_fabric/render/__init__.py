"""Pure renderers: topology -> SPIRE server/agent HCL, Mermaid diagrams and HTML views.

Same input, byte-identical output. The Kubernetes manifest renderer lives in
``spire_fabric.render.kubernetes`` (written against the same model and :class:`RenderPaths`).
"""

from spire_fabric.render._agent import render_agent_config
from spire_fabric.render._mermaid import render_mermaid
from spire_fabric.render._monitoring import (
    ALERT_NAMES,
    render_alert_rules,
    render_alertmanager_config,
    render_prometheus_config,
)
from spire_fabric.render._paths import K8S_ROOT, RenderPaths
from spire_fabric.render._server import render_server_config
from spire_fabric.render._views import HEALTH_COLOURS, render_topology_html, render_topology_svg

__all__ = [
    "ALERT_NAMES",
    "HEALTH_COLOURS",
    "K8S_ROOT",
    "RenderPaths",
    "render_agent_config",
    "render_alert_rules",
    "render_alertmanager_config",
    "render_mermaid",
    "render_prometheus_config",
    "render_server_config",
    "render_topology_html",
    "render_topology_svg",
]
