"""A fluent builder so a topology reads top to bottom in a notebook cell.

The builder is forgiving about spelling (lists for tuples, "6h" for timedeltas) and strict
about meaning: :meth:`TopologyBuilder.build` runs :func:`validate_topology`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from spire_fabric.identity import TrustDomain
from spire_fabric.topology._durations import parse_duration
from spire_fabric.topology._errors import Problem, TopologyError
from spire_fabric.topology._model import (
    Agent,
    AgentKubernetes,
    BundleEndpointProfile,
    CaHierarchy,
    Cluster,
    Federation,
    IntermediateCa,
    KubernetesOptions,
    RootCa,
    Server,
    ServerKubernetes,
    Topology,
    TrustDomainSpec,
    Workload,
    WorkloadKubernetes,
)
from spire_fabric.topology._trust_domains import topology_trust_domain
from spire_fabric.topology._validate import validate_topology

_DURATION_FIELDS = {
    "ca_ttl",
    "default_x509_svid_ttl",
    "default_jwt_svid_ttl",
    "x509_svid_ttl",
    "jwt_svid_ttl",
    "ttl",
}


def _duration(value: timedelta | str | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    return parse_duration(value)


def _coerce(kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _DURATION_FIELDS:
            value = _duration(value)
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


class TopologyBuilder:
    """Collects elements in the order given; that order is kept in YAML and renders."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._trust_domains: list[TrustDomainSpec] = []
        self._servers: list[Server] = []
        self._agents: list[Agent] = []
        self._workloads: list[Workload] = []
        self._federations: list[Federation] = []
        self._clusters: list[Cluster] = []
        self._ca: CaHierarchy | None = None
        self._kubernetes = KubernetesOptions()
        # A trust domain that is not one cannot be stored in the typed model: the problem
        # is kept and reported by build() with the others, naming the field.
        self._problems: list[Problem] = []

    def _add(self, items: list[Any], make: Callable[[], Any]) -> None:
        try:
            items.append(make())
        except TopologyError as err:
            self._problems.extend(err.problems)

    def trust_domain(self, name: TrustDomain | str, description: str = "") -> TopologyBuilder:
        path = f"trust_domains[{len(self._trust_domains)}]"
        self._add(
            self._trust_domains,
            lambda: TrustDomainSpec(topology_trust_domain(name, path), description),
        )
        return self

    def cluster(
        self, name: str, namespaces: Iterable[str] = (), node_address: str | None = None
    ) -> TopologyBuilder:
        self._clusters.append(Cluster(name, tuple(namespaces), node_address))
        return self

    def server(
        self,
        name: str,
        trust_domain: TrustDomain | str,
        *,
        kubernetes: ServerKubernetes | None = None,
        **fields: Any,
    ) -> TopologyBuilder:
        """Add a server; ``fields`` are :class:`Server` fields (TTLs may be "6h")."""
        self._add(
            self._servers,
            lambda: Server(
                name=name, trust_domain=trust_domain, kubernetes=kubernetes, **_coerce(fields)
            ),
        )
        return self

    def agent(
        self,
        name: str,
        server: str,
        *,
        kubernetes: AgentKubernetes | None = None,
        **fields: Any,
    ) -> TopologyBuilder:
        self._agents.append(
            Agent(name=name, server=server, kubernetes=kubernetes, **_coerce(fields))
        )
        return self

    def workload(
        self,
        name: str,
        spiffe_id: str,
        *,
        agent: str,
        selectors: Iterable[str],
        kubernetes: WorkloadKubernetes | None = None,
        **fields: Any,
    ) -> TopologyBuilder:
        self._add(
            self._workloads,
            lambda: Workload(
                name=name,
                spiffe_id=spiffe_id,
                agent=agent,
                selectors=tuple(selectors),
                kubernetes=kubernetes,
                **_coerce(fields),
            ),
        )
        return self

    def federation(
        self,
        server: str,
        trust_domain: TrustDomain | str,
        *,
        profile: BundleEndpointProfile = "https_spiffe",
        endpoint_url: str | None = None,
        endpoint_spiffe_id: str | None = None,
    ) -> TopologyBuilder:
        """One-way: ``server`` fetches ``trust_domain``'s bundle."""
        self._add(
            self._federations,
            lambda: Federation(
                server, trust_domain, profile, endpoint_url, endpoint_spiffe_id
            ),
        )
        return self

    def federate(
        self, a: str, b: str, *, profile: BundleEndpointProfile = "https_spiffe"
    ) -> TopologyBuilder:
        """Two-way federation between servers ``a`` and ``b`` (each fetches the other's
        bundle from its bundle endpoint; URLs are derived per target)."""
        by_name = {s.name: s for s in self._servers}
        for here, there in ((a, b), (b, a)):
            if there not in by_name:
                raise KeyError(f"federate: no server {there!r} added yet")
            self.federation(here, by_name[there].trust_domain, profile=profile)
        return self

    def ca(
        self,
        root: RootCa | None = None,
        intermediates: Iterable[IntermediateCa] = (),
    ) -> TopologyBuilder:
        self._ca = CaHierarchy(root or RootCa(), tuple(intermediates))
        return self

    def kubernetes(self, **fields: Any) -> TopologyBuilder:
        self._kubernetes = KubernetesOptions(**fields)
        return self

    def build(self, *, validate: bool = True) -> Topology:
        if self._problems:
            raise TopologyError(self._problems)
        topology = Topology(
            name=self._name,
            trust_domains=tuple(self._trust_domains),
            servers=tuple(self._servers),
            agents=tuple(self._agents),
            workloads=tuple(self._workloads),
            federations=tuple(self._federations),
            ca=self._ca,
            clusters=tuple(self._clusters),
            kubernetes=self._kubernetes,
        )
        return validate_topology(topology) if validate else topology
