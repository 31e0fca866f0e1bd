"""HTML views that draw a topology: the SVG diagram (notebooks and the dashboard) and the
notebook view of a :class:`~spire_fabric.topology.Topology`.

Why here and not in ``spire_fabric._html``: drawing a topology is rendering it (the view
carries the Mermaid source from :func:`render_mermaid`), and ``_html`` sits below
``identity`` and formats values only. Every name and label still passes through
``_html.esc``, and the result is an ``_html.Html``, so escaping stays audited in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

from spire_fabric._html import Html, details, esc, join, pre, tag
from spire_fabric.render._mermaid import render_mermaid
from spire_fabric.topology import Topology

__all__ = ["HEALTH_COLOURS", "render_topology_html", "render_topology_svg"]

HEALTH_COLOURS = {True: "#2da44e", False: "#cf222e", None: "#8c959f"}


def _box(x: int, y: int, w: int, label: str, sub: str, colour: str, key: str) -> str:
    return (
        f'<g data-component="{esc(key)}"><rect x="{x}" y="{y}" width="{w}" height="44" rx="6" '
        f'fill="#fff" stroke="{colour}" stroke-width="3"/>'
        f'<text x="{x + 8}" y="{y + 18}" font-size="12" font-weight="bold">{esc(label)}</text>'
        f'<text x="{x + 8}" y="{y + 34}" font-size="10" fill="#57606a">{esc(sub)}</text></g>'
    )


def render_topology_svg(
    topology: Topology, health: Mapping[str, bool | None] | None = None
) -> Html:
    """An SVG of the topology: one column per trust domain with its servers, agents and
    workloads, lines for attestation, Workload API and federation. Drawn here, server-side,
    so it shows offline and on a code host (a Mermaid diagram needs Mermaid's JavaScript).
    ``health`` maps component names to True/False/None (green/red/grey border)."""
    health = health or {}
    col_w, box_w, row_h = 330, 300, 64
    boxes: list[str] = []
    lines: list[str] = []
    where: dict[str, tuple[int, int]] = {}
    height = 0
    for c, td in enumerate(topology.trust_domains):
        x = 10 + c * col_w
        boxes.append(
            f'<text x="{x}" y="20" font-size="13" font-weight="bold">'
            f"trust domain {esc(td.name)}</text>"
        )
        y = 36
        items: list[tuple[str, str, str]] = []
        for s in topology.servers_of(td.name):
            items.append((s.name, "server", f"SPIRE server · API {s.host}:{s.ports.api}"))
        agents_here = [a for s in topology.servers_of(td.name) for a in topology.agents_of(s.name)]
        items.extend((a.name, "agent", f"agent of {a.server}") for a in agents_here)
        names = {a.name for a in agents_here}
        items.extend(
            (w.name, "workload", w.spiffe_id) for w in topology.workloads if w.agent in names
        )
        for name, kind, sub in items:
            colour = HEALTH_COLOURS.get(health.get(name), HEALTH_COLOURS[None])
            boxes.append(_box(x, y, box_w, f"{kind} {name}", sub, colour, name))
            where[name] = (x, y)
            y += row_h
        height = max(height, y)
    for a in topology.agents:
        if a.name in where and a.server in where:
            (x1, y1), (x2, y2) = where[a.name], where[a.server]
            lines.append(_line(x1 + 20, y1, x2 + 20, y2 + 44, "#8c959f"))
    for w in topology.workloads:
        if w.name in where and w.agent in where:
            (x1, y1), (x2, y2) = where[w.name], where[w.agent]
            lines.append(_line(x1 + 40, y1, x2 + 40, y2 + 44, "#d0d7de"))
    for f in topology.federations:
        owners = [s.name for s in topology.servers_of(f.trust_domain)]
        if f.server in where and owners and owners[0] in where:
            (x1, y1), (x2, y2) = where[f.server], where[owners[0]]
            lines.append(_line(x1 + box_w, y1 + 22, x2, y2 + 22, "#0969da", dashed=True))
    width = max(1, len(topology.trust_domains)) * col_w + 10
    body = "".join(lines + boxes)
    return Html(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 10}" '
        f'font-family="sans-serif" role="img" aria-label="topology {esc(topology.name)}">'
        f"{body}</svg>"
    )


def _line(x1: int, y1: int, x2: int, y2: int, colour: str, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    return (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" stroke-width="2"{dash}/>'
    )


def render_topology_html(top: Topology) -> Html:
    """The notebook view of a topology: a caption with its counts, the SVG diagram, and the
    Mermaid source in a collapsible block (``Topology._repr_html_`` shows this)."""
    caption = tag(
        "p",
        tag("b", f"topology {top.name}"),
        f": {len(top.servers)} servers, {len(top.agents)} agents, "
        f"{len(top.workloads)} workloads, {len(top.federations)} federation relationships",
    )
    source = details(
        "Mermaid source (paste into mermaid.live or a Markdown code host)", pre(render_mermaid(top))
    )
    return join([caption, render_topology_svg(top), source])
