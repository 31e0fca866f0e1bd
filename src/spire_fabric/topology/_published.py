"""What a deployment publishes beyond where its owner runs, and who may call it.

``plan`` lists these so an operator sees every door before ``up`` opens it. On Kubernetes
that is every NodePort (the renderer publishes exactly these; a unit test holds it to
that); locally every TCP port a server, agent or workload listens on, all on loopback, so
any process of the machine may connect.
"""

from __future__ import annotations

from dataclasses import dataclass

from spire_fabric.topology._model import Server, Target, Topology, Workload
from spire_fabric.topology._resolve import agent_node_attestor, api_node_port

_BUNDLE_AUTH = {
    "https_spiffe": "SPIFFE auth of the server",
    "https_web": "web PKI certificate of the server",
}
_WORKLOAD_CALLERS = "authenticated by the workload itself"


@dataclass(frozen=True)
class PublishedPort:
    """One published port: ``where`` is the cluster (Kubernetes: the port is open on its
    nodes) or the address it is bound to (local); ``callers`` says who may call it and how
    they are authenticated."""

    port: int
    where: str
    owner: str
    purpose: str
    callers: str
    protocol: str = "TCP"

    def __str__(self) -> str:
        return (
            f"{self.port}/{self.protocol} {self.owner} {self.purpose} — {self.callers} "
            f"[{self.where}]"
        )


def published_ports(topology: Topology, target: Target) -> tuple[PublishedPort, ...]:
    """Every published port of ``topology`` on ``target``, ordered by where, then port.

    Locally pass the topology as the local target runs it (``Deployment.topology``: ports
    moved by ``--port-base``, servers on their own loopback address)."""
    out = _kubernetes(topology) if target == "kubernetes" else _local(topology)
    return tuple(sorted(out, key=lambda p: (p.where, p.port)))


def workload_node_port(workload: Workload) -> int | None:
    """The NodePort of a workload that runs and serves (only those get a Service)."""
    k = workload.kubernetes
    if k is None or k.service_port is None or (not k.command and workload.run is None):
        return None
    return k.node_port


def _federation(server: Server) -> tuple[str, str]:
    assert server.bundle_endpoint is not None
    auth = _BUNDLE_AUTH[server.bundle_endpoint.profile]
    return "federation bundle endpoint", f"any federated peer ({auth}; the bundle is public)"


def _api_callers(topology: Topology, server: Server, target: Target, outside: bool) -> str:
    cluster = server.kubernetes.cluster if server.kubernetes else None
    agents = [
        a
        for a in topology.agents_of(server.name)
        if not outside or (a.kubernetes.cluster if a.kubernetes else None) != cluster
    ]
    if not agents:
        return "nested servers and admin clients (mTLS with a downstream or admin SVID)"
    how = sorted({agent_node_attestor(a, target) for a in agents})
    names = ", ".join(a.name for a in agents)
    return f"agents {names} (node attestation by {'/'.join(how)}, then mTLS with their SVID)"


def _kubernetes(topology: Topology) -> list[PublishedPort]:
    out: list[PublishedPort] = []
    for s in topology.servers:
        k = s.kubernetes
        if k is None:
            continue
        api = api_node_port(topology, s)
        if api is not None:
            callers = _api_callers(topology, s, "kubernetes", outside=True)
            out.append(PublishedPort(api, k.cluster, s.name, "SPIRE Server API", callers))
        if s.bundle_endpoint is not None and k.node_ports.federation is not None:
            purpose, callers = _federation(s)
            out.append(PublishedPort(k.node_ports.federation, k.cluster, s.name, purpose, callers))
    for w in topology.workloads:
        node_port = workload_node_port(w)
        if node_port is not None:
            cluster = topology.agent(w.agent).kubernetes
            assert cluster is not None
            out.append(
                PublishedPort(
                    node_port, cluster.cluster, w.name, "workload", f"external clients "
                    f"({_WORKLOAD_CALLERS})",
                )
            )  # fmt: skip
    if topology.monitoring is not None:
        from spire_fabric.topology._kubernetes_only import monitoring_cluster

        main = monitoring_cluster(topology)
        for c in topology.clusters:
            if c.name != main:
                out.append(PublishedPort(
                    topology.monitoring.prometheus_port, c.name, f"prometheus ({c.name})",
                    "Prometheus API (federation)",
                    f"the Prometheus of {main} (read-only queries, no authentication)",
                ))  # fmt: skip
    return out


def _local(topology: Topology) -> list[PublishedPort]:
    anyone = "any local process (no authentication)"
    out: list[PublishedPort] = []
    for s in topology.servers:
        p = s.ports
        callers = _api_callers(topology, s, "local", outside=False)
        out.append(PublishedPort(p.api, s.host, s.name, "SPIRE Server API", callers))
        out.append(PublishedPort(p.health, s.host, s.name, "health checks", anyone))
        if p.telemetry is not None:
            out.append(PublishedPort(p.telemetry, s.host, s.name, "Prometheus metrics", anyone))
        if s.bundle_endpoint is not None:
            purpose, callers = _federation(s)
            out.append(PublishedPort(p.federation, s.host, s.name, purpose, callers))
    for a in topology.agents:
        if a.health_port is not None:
            out.append(PublishedPort(a.health_port, a.host, a.name, "health checks", anyone))
        if a.telemetry_port is not None:
            out.append(
                PublishedPort(a.telemetry_port, a.host, a.name, "Prometheus metrics", anyone)
            )
    for w in topology.workloads:
        if w.run is not None and w.run.port is not None:
            out.append(
                PublishedPort(w.run.port, "127.0.0.1", w.name, "workload",
                              f"local clients ({_WORKLOAD_CALLERS})")
            )  # fmt: skip
        if w.run is not None and w.run.metrics_port is not None:
            out.append(
                PublishedPort(w.run.metrics_port, "127.0.0.1", w.name, "Prometheus metrics",
                              anyone)
            )  # fmt: skip
    m = topology.monitoring
    if m is not None:
        out.append(PublishedPort(m.prometheus_port, "127.0.0.1", "prometheus",
                                 "Prometheus API and UI", anyone))  # fmt: skip
        out.append(PublishedPort(m.alertmanager_port, "127.0.0.1", "alertmanager",
                                 "Alertmanager API and UI", anyone))  # fmt: skip
    return out
