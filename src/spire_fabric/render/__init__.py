"""Pure renderers: topology -> SPIRE server/agent HCL and Mermaid diagrams.

Same input, byte-identical output. The Kubernetes manifest renderer lives in
``spire_fabric.render.kubernetes`` (written against the same model and :class:`RenderPaths`).
"""

from spire_fabric.render._agent import render_agent_config
from spire_fabric.render._mermaid import render_mermaid
from spire_fabric.render._paths import K8S_ROOT, RenderPaths
from spire_fabric.render._server import render_server_config

__all__ = [
    "K8S_ROOT",
    "RenderPaths",
    "render_agent_config",
    "render_mermaid",
    "render_server_config",
]
