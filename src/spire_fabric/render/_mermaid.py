"""topology -> Mermaid flowchart: trust domains as subgraphs, the CA hierarchy, servers
with their ports, datastores, controller managers, agents, workloads and federation."""

from __future__ import annotations

import re

from spire_fabric.identity import TrustDomain
from spire_fabric.topology import (
    DiskUpstreamAuthority,
    MySqlDatastore,
    PostgresDatastore,
    Server,
    SpireUpstreamAuthority,
    SqliteDatastore,
    Topology,
    agent_node_attestor,
    api_node_port,
    controller_manager_enabled,
    effective_datastore,
    format_duration,
    workload_node_port,
)


def _id(prefix: str, name: str | TrustDomain) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9]', '_', str(name))}"


def _label(*lines: str | TrustDomain) -> str:
    return '"' + "<br/>".join(str(line).replace('"', "'") for line in lines) + '"'


def _datastore_name(ds: object) -> str:
    if isinstance(ds, SqliteDatastore):
        return "SQLite"
    if isinstance(ds, MySqlDatastore):
        return f"MySQL {ds.instance.service}" if ds.instance else "MySQL"
    if isinstance(ds, PostgresDatastore):
        return "PostgreSQL"
    return type(ds).__name__  # pragma: no cover - exhaustive above


def _server_lines(topology: Topology, server: Server) -> list[str]:
    p = server.ports
    lines = [f"<b>{server.name}</b>", f"API {p.api} · health {p.health}"]
    if server.bundle_endpoint is not None:
        lines.append(f"bundle endpoint {p.federation} ({server.bundle_endpoint.profile})")
    x509, jwt = server.default_x509_svid_ttl, server.default_jwt_svid_ttl
    lines.append(f"X.509-SVID {format_duration(x509)} · JWT-SVID {format_duration(jwt)}")
    k = server.kubernetes
    if k is not None:
        # what the Kubernetes renderer publishes, not what the topology keeps in reserve
        federation = k.node_ports.federation if server.bundle_endpoint else None
        node_ports = (("API", api_node_port(topology, server)), ("federation", federation))
        ports = [f"{kind} {n}" for kind, n in node_ports if n]
        if ports:
            lines.append("NodePorts " + " · ".join(ports))
        lines.append(f"ns {k.namespace} @ {k.cluster}")
    return lines


def render_mermaid(topology: Topology) -> str:
    """A ``flowchart LR`` of the whole topology. Pure and deterministic."""
    out: list[str] = ["flowchart LR"]
    edges: list[str] = []
    add = out.append

    if topology.ca is not None:
        root = topology.ca.root
        add('    subgraph ca_hierarchy["CA hierarchy (offline)"]')
        add(f"        {_id('ca', root.name)}[{_label(f'<b>{root.common_name}</b>', root.name)}]")
        for i in topology.ca.intermediates:
            label = _label(
                f"<b>{i.common_name}</b>", f"URI name constraint: {i.permitted_uri_domain}"
            )
            add(f"        {_id('ca', i.name)}[{label}]")
            edges.append(f"    {_id('ca', root.name)} -->|signs| {_id('ca', i.name)}")
        add("    end")

    for td in topology.trust_domains:
        add(f"    subgraph {_id('td', td.name)}[{_label(f'trust domain {td.name}')}]")
        add("        direction TB")
        for s in topology.servers_of(td.name):
            sid = _id("srv", s.name)
            add(f"        {sid}[{_label(*_server_lines(topology, s))}]")
            local = _datastore_name(effective_datastore(s, "local"))
            k8s = _datastore_name(effective_datastore(s, "kubernetes"))
            ds = local if local == k8s else f"local: {local} · kubernetes: {k8s}"
            add(f"        {_id('ds', s.name)}[({_label('datastore', ds)})]")
            edges.append(f"    {sid} --- {_id('ds', s.name)}")
            if controller_manager_enabled(topology, s):
                cm = _id("cm", s.name)
                add(f"        {cm}[{_label('spire-controller-manager', 'kubernetes only')}]")
                edges.append(f"    {cm} -->|registers entries| {sid}")
            ua = s.upstream_authority
            if isinstance(ua, DiskUpstreamAuthority):
                edges.append(f"    {_id('ca', ua.ca)} -->|UpstreamAuthority disk| {sid}")
            elif isinstance(ua, SpireUpstreamAuthority):
                edges.append(f"    {_id('srv', ua.server)} -->|UpstreamAuthority spire| {sid}")
            for a in topology.agents_of(s.name):
                where = (
                    f"ns {a.kubernetes.namespace} @ {a.kubernetes.cluster}"
                    if a.kubernetes
                    else "host"
                )
                label = _label(
                    f"<b>agent {a.name}</b>",
                    f"k8s: {agent_node_attestor(a, 'kubernetes')} · local: join_token",
                    "workload attestors " + ", ".join(a.workload_attestors),
                    where,
                )
                add(f"        {_id('agent', a.name)}[{label}]")
                edges.append(f"    {_id('agent', a.name)} -->|attests| {sid}")
        for w in topology.workloads:
            agent = next((a for a in topology.agents if a.name == w.agent), None)
            if agent is None or topology.server(agent.server).trust_domain != td.name:
                continue
            lines = [f"<b>{w.name}</b>", w.spiffe_id]
            if workload_node_port(w):
                lines.append(f"NodePort {workload_node_port(w)}")
            if w.downstream:
                lines.append("downstream entry")
            add(f"        {_id('wl', w.name)}([{_label(*lines)}])")
            edges.append(f"    {_id('wl', w.name)} -->|Workload API| {_id('agent', w.agent)}")
            for other in w.federates_with:
                edges.append(f"    {_id('wl', w.name)} -.->|federates with| {_id('td', other)}")
        add("    end")

    pairs = {(f.server, f.trust_domain): f for f in topology.federations}
    done: set[tuple[str, str]] = set()
    for f in topology.federations:
        here = topology.server(f.server)
        owners = [s for s in topology.servers_of(f.trust_domain) if s.bundle_endpoint]
        if not owners:
            src, dst = _id("srv", f.server), _id("td", f.trust_domain)
            edges.append(f"    {src} -->|fetches bundle {f.profile}| {dst}")
            continue
        there = owners[0]
        key = tuple(sorted((here.name, there.name)))
        if key in done:
            continue
        done.add(key)  # type: ignore[arg-type]
        back = (there.name, here.trust_domain) in pairs
        arrow = "<-->" if back else "-->"
        edges.append(
            f"    {_id('srv', here.name)} {arrow}|federation {f.profile}| {_id('srv', there.name)}"
        )
    return "\n".join([*out, *edges]) + "\n"
