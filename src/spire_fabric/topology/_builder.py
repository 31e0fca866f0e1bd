"""A fluent builder so a topology reads top to bottom in a notebook cell.

The builder is forgiving about spelling (lists for tuples, "6h" for timedeltas) and strict
about meaning: :meth:`TopologyBuilder.build` runs :func:`validate_topology`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, cast

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
    Monitoring,
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
    "prune_attested_nodes_expired_for",
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
        self._monitoring: Monitoring | None = None
        # A trust domain that is not one cannot be stored in the typed model: the problem
        # is kept and reported by build() with the others, naming the field.
        self._problems: list[Problem] = []

    def _add(self, items: list[Any], make: Callable[[], Any]) -> None:
        try:
            items.append(make())
        except TopologyError as err:
            self._problems.extend(err.problems)

    def trust_domain(self, name: TrustDomain | str, description: str = "") -> TopologyBuilder:
        """Declare a trust domain."""
        path = f"trust_domains[{len(self._trust_domains)}]"
        self._add(
            self._trust_domains,
            lambda: TrustDomainSpec(topology_trust_domain(name, path), description),
        )
        return self

    def cluster(
        self, name: str, namespaces: Iterable[str] = (), node_address: str | None = None
    ) -> TopologyBuilder:
        """Add a Kubernetes cluster and the namespaces it holds."""
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
                name=name,
                # A str is read by Server.__post_init__, which names the field if it is bad.
                trust_domain=cast(TrustDomain, trust_domain),
                kubernetes=kubernetes,
                **_coerce(fields),
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
        """Add an agent of ``server``; ``fields`` are :class:`Agent` fields."""
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
        """Add a workload with its SPIFFE ID and selectors; ``fields`` are :class:`Workload`
        fields (federates_with, TTLs, how to run it locally and on Kubernetes).
        """
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

    def add_workloads(self, workloads: Iterable[Workload]) -> TopologyBuilder:
        """Add workloads made by the caller (``Workload(...)``), checked by :meth:`build`
        like every other. For generators of thousands (the scale preset's 50k): the
        per-call keyword handling of :meth:`workload` was a third of making each one."""
        self._workloads.extend(workloads)
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
                # A str is read by Federation.__post_init__, which names the field if bad.
                server, cast(TrustDomain, trust_domain), profile, endpoint_url, endpoint_spiffe_id
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
        """Set the CA hierarchy: the root and its name-constrained intermediates."""
        self._ca = CaHierarchy(root or RootCa(), tuple(intermediates))
        return self

    def kubernetes(self, **fields: Any) -> TopologyBuilder:
        """Set the Kubernetes options (registration, RBAC scope, images)."""
        self._kubernetes = KubernetesOptions(**fields)
        return self

    def monitoring(self, **fields: Any) -> TopologyBuilder:
        """Watch the deployment with Prometheus and Alertmanager (see ``Monitoring``)."""
        self._monitoring = Monitoring(**fields)
        return self

    def build(self, *, validate: bool = True) -> Topology:
        """The topology; validated unless ``validate=False`` (a TopologyError lists every
        problem, each naming its field).
        """
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
            monitoring=self._monitoring,
        )
        return validate_topology(topology) if validate else topology


def _deprecated_builder(name: str) -> TopologyBuilder:
    """Deprecated: use ``TopologyBuilder(name)``, whose chain the type checker follows."""
    warnings.warn(
        "TopologyBuilder(name) is deprecated: use TopologyBuilder(name) "
        "(from spire_fabric.topology import TopologyBuilder), which the type checker follows",
        DeprecationWarning,
        stacklevel=2,
    )
    return TopologyBuilder(name)


# Topology.builder, bound here because the model cannot import its builder (see _model).
Topology.builder = staticmethod(_deprecated_builder)
