"""Every rule a topology must satisfy before anything is rendered from it.

Rules collect problems instead of stopping at the first one, so the user sees the whole
list in one :class:`TopologyError`. Each problem names a field path and says why.
"""

from __future__ import annotations

import ipaddress
import re
import weakref
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from pathlib import PurePosixPath
from typing import get_args
from urllib.parse import urlsplit

from spire_fabric.identity import SpiffeId, SpiffeIdError, TrustDomain
from spire_fabric.topology._durations import format_duration
from spire_fabric.topology._errors import Problem, TopologyError
from spire_fabric.topology._model import (
    CA_KEY_TYPES,
    TARGETS,
    WORKLOAD_ATTESTORS,
    Agent,
    AgentKubernetes,
    DiskUpstreamAuthority,
    JoinTokenAttestor,
    K8sPsatAttestor,
    KubeletAccess,
    KubeletVerification,
    MySqlDatastore,
    Server,
    SpireUpstreamAuthority,
    Topology,
    Workload,
)
from spire_fabric.topology._resolve import (
    agent_namespaces,
    agent_workload_attestors,
    bundle_endpoint_owner,
    bundle_publisher_namespaces,
    server_key_manager,
    server_replicas,
    shared_datastore,
)
from spire_fabric.topology._validate_run import run_problems
from spire_fabric.topology._validate_sidecars import sidecar_problems

_PROFILES = ("https_spiffe", "https_web")
_LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
_NODE_PORT_RANGE = range(30000, 32768)
# a Kubernetes storage quantity with a binary or decimal suffix (no bare bytes: a typo)
_QUANTITY = re.compile(r"[1-9][0-9]*(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)")

# The name rules of Kubernetes (k8s.io/apimachinery/pkg/util/validation): namespaces and most
# object names we derive from component names are DNS-1123 labels; Services are DNS-1035
# labels (no leading digit); ServiceAccounts, ConfigMaps and Secrets are DNS-1123 subdomains.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_MAX = 63
_SUBDOMAIN_MAX = 253
_AS_DIRECTORY = "it is used as a directory and Kubernetes object name"


# Topologies that passed validate_topology, by id (a weak value: the entry goes with the
# topology, and an id reused by another object does not match it). A topology is a frozen
# value, so once sound it stays sound: presets, builders and loaders validate it, and the
# targets that validate it again before transforming it (localize) do not pay twice.
_VALID: weakref.WeakValueDictionary[int, Topology] = weakref.WeakValueDictionary()


def validate_topology(topology: Topology) -> Topology:
    """Return ``topology`` unchanged if it is sound, else raise :class:`TopologyError`."""
    if _VALID.get(id(topology)) is topology:
        return topology
    v = _Validator(topology)
    v.run()
    v.problems += run_problems(topology)
    v.problems += sidecar_problems(topology)
    if v.problems:
        raise TopologyError(v.problems)
    _VALID[id(topology)] = topology
    return topology


def validate_localized(topology: Topology) -> Topology:
    """:func:`validate_topology`'s rules over what a target's localization changes (servers'
    hosts, ports and datastores, agents' ports, workloads' local selectors and run ports),
    for a topology made from one that passed every rule; raise :class:`TopologyError`.

    Why not every rule again: the rest is unchanged and was checked, and with 50k workloads
    a second full pass was an eighth of `plan`. Each message is the one the full pass gives.
    """
    v = _Validator(topology)
    for s in topology.servers:
        v._server(s)
    # the selector rule reads only the agent and the selectors: a pair found sound once is
    # sound for every workload that has it (locally, every workload has the same selector)
    sound: set[tuple[str, tuple[str, ...]]] = set()
    for w in topology.workloads:
        agent = v.agents.get(w.agent)
        if agent is None or not w.local_selectors or (w.agent, w.local_selectors) in sound:
            continue
        found = len(v.problems)
        v._local_selectors(f"workloads[{w.name}]", w, agent)
        if len(v.problems) == found:
            sound.add((w.agent, w.local_selectors))
    v._ports()
    v.problems += run_problems(topology)
    if v.problems:
        raise TopologyError(v.problems)
    return topology


class _Validator:
    def __init__(self, t: Topology) -> None:
        self.t = t
        self.problems: list[Problem] = []
        self.trust_domains = {td.name for td in t.trust_domains}
        self.servers = {s.name: s for s in t.servers}
        self.agents = {a.name: a for a in t.agents}
        self.clusters = {c.name: c for c in t.clusters}
        self._local_attestors: dict[str, tuple[str, ...]] = {}
        # (agent, selectors, local selectors) whose selector rules passed
        self._sound: set[tuple[str, tuple[str, ...], tuple[str, ...]]] = set()

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def run(self) -> None:
        self._names()
        self._dns_names()
        if not self.t.servers:
            self.bad("servers", "a topology needs at least one server")
        for s in self.t.servers:
            self._server(s)
        for a in self.t.agents:
            self._agent(a)
        for w in self.t.workloads:
            self._workload(w)
        self._federations()
        self._ca()
        self._ports()
        self._kubernetes()
        self._agent_namespaces()
        self._server_namespaces()
        self._bundle_configmaps()
        self._monitoring()

    def _monitoring(self) -> None:
        m = self.t.monitoring
        if m is None:
            return
        for kind in ("scrape_interval", "evaluation_interval", "retention"):
            if getattr(m, kind) < timedelta(seconds=1):
                self.bad(f"monitoring.{kind}", "must be at least 1s")
        if m.edge_workload is not None and m.edge_workload not in {
            w.name for w in self.t.workloads
        }:
            self.bad("monitoring.edge_workload", f"unknown workload {m.edge_workload!r}")

    # --- names ------------------------------------------------------------------------

    def _names(self) -> None:
        groups: dict[str, Iterable[str]] = {
            "trust_domains": (td.name.name for td in self.t.trust_domains),
            "servers": (s.name for s in self.t.servers),
            "agents": (a.name for a in self.t.agents),
            "workloads": (w.name for w in self.t.workloads),
            "clusters": (c.name for c in self.t.clusters),
        }
        for group, names in groups.items():
            # sorting only the repeated names: sorting all of them was 5% of a 50k plan
            repeated = sorted((n, c) for n, c in Counter(names).items() if c > 1)
            for name, count in repeated:
                self.bad(f"{group}[{name}]", f"name is used {count} times; names must be unique")
        if not self.t.name:
            self.bad("name", "topology name cannot be empty")

    def _dns_names(self) -> None:
        """Names become directories (the local state root) and Kubernetes object names, so
        a name like ``../../x`` would escape the state root and ``App_1`` would be refused by
        the API server only after half a deployment was applied."""
        t = self.t
        if t.name:
            self._label("name", t.name, _AS_DIRECTORY)
        for s in t.servers:
            p = f"servers[{s.name}]"
            self._label(f"{p}.name", s.name, _AS_DIRECTORY)
            self._mysql_instance(f"{p}.datastore", s.datastore)
            if s.kubernetes is not None:
                k = s.kubernetes
                self._pod_identity(f"{p}.kubernetes", k.namespace, k.service_account)
                self._subdomain(f"{p}.kubernetes.bundle_configmap", k.bundle_configmap, "ConfigMap")
                self._mysql_instance(f"{p}.kubernetes.datastore", k.datastore)
        for a in t.agents:
            p = f"agents[{a.name}]"
            self._label(f"{p}.name", a.name, _AS_DIRECTORY)
            if a.kubernetes is not None:
                agent_k8s = a.kubernetes
                self._pod_identity(
                    f"{p}.kubernetes", agent_k8s.namespace, agent_k8s.service_account
                )
        for w in t.workloads:
            p = f"workloads[{w.name}]"
            self._label(f"{p}.name", w.name, _AS_DIRECTORY)
            if w.kubernetes is not None:
                k8s = w.kubernetes
                self._pod_identity(f"{p}.kubernetes", k8s.namespace, k8s.service_account)
        for c in t.clusters:
            p = f"clusters[{c.name}]"
            self._label(f"{p}.name", c.name, "it names the cluster and its nodes")
            for i, ns in enumerate(c.namespaces):
                self._namespace(f"{p}.namespaces[{i}]", ns)
        if t.ca is not None:
            self._label("ca.root.name", t.ca.root.name, _AS_DIRECTORY)
            for inter in t.ca.intermediates:
                self._label(f"ca.intermediates[{inter.name}].name", inter.name, _AS_DIRECTORY)

    def _mysql_instance(self, path: str, ds: object) -> None:
        if not isinstance(ds, MySqlDatastore) or ds.instance is None:
            return
        inst = ds.instance
        if len(inst.service) > _LABEL_MAX or not _DNS1035_LABEL.fullmatch(inst.service):
            self.bad(
                f"{path}.instance.service",
                f"{inst.service!r} is not a DNS-1035 label (lowercase letters, digits and '-', "
                f"starting with a letter and ending with a letter or digit, at most "
                f"{_LABEL_MAX} characters); Kubernetes Service names must be one",
            )
        self._subdomain(f"{path}.instance.password_secret", inst.password_secret, "Secret")

    def _label(self, path: str, name: str, use: str) -> None:
        if len(name) > _LABEL_MAX or not _DNS1123_LABEL.fullmatch(name):
            self.bad(
                path,
                f"{name!r} is not a DNS-1123 label (lowercase letters, digits and '-', starting "
                f"and ending with a letter or digit, at most {_LABEL_MAX} characters); {use}",
            )

    def _pod_identity(self, path: str, namespace: str, service_account: str) -> None:
        self._namespace(f"{path}.namespace", namespace)
        self._subdomain(f"{path}.service_account", service_account, "ServiceAccount")

    def _namespace(self, path: str, name: str) -> None:
        self._label(path, name, "Kubernetes namespace names must be one")

    def _subdomain(self, path: str, name: str, kind: str) -> None:
        if len(name) > _SUBDOMAIN_MAX or not _DNS1123_SUBDOMAIN.fullmatch(name):
            self.bad(
                path,
                f"{name!r} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
                f"each '.'-separated part starting and ending with a letter or digit, at most "
                f"{_SUBDOMAIN_MAX} characters); Kubernetes {kind} names must be one",
            )

    def _known_trust_domain(self, path: str, td: TrustDomain) -> None:
        # The model holds TrustDomain values (text was read once, with its own errors);
        # what is left to check is that the topology declares it.
        if td not in self.trust_domains:
            self.bad(
                path,
                f"trust domain '{td}' is not declared in trust_domains "
                f"(declared: {', '.join(sorted(map(str, self.trust_domains))) or 'none'})",
            )

    # --- servers ----------------------------------------------------------------------

    def _server(self, s: Server) -> None:
        p = f"servers[{s.name}]"
        self._known_trust_domain(f"{p}.trust_domain", s.trust_domain)
        try:
            ipaddress.ip_address(s.host)
        except ValueError:
            self.bad(
                f"{p}.host",
                f"{s.host!r} is not an IP address; SPIRE binds the bundle endpoint to an IP",
            )
        if s.ca_key_type not in CA_KEY_TYPES:
            self.bad(
                f"{p}.ca_key_type",
                f"{s.ca_key_type!r} is not a SPIRE key type; use one of {', '.join(CA_KEY_TYPES)}",
            )
        if s.key_manager not in ("disk", "memory"):
            self.bad(f"{p}.key_manager", f"{s.key_manager!r} is not one of disk, memory")
        if s.log_level not in _LOG_LEVELS:
            self.bad(f"{p}.log_level", f"{s.log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
        for field_name in ("default_x509_svid_ttl", "default_jwt_svid_ttl"):
            self._ttl_within_ca(f"{p}.{field_name}", getattr(s, field_name), s)
        if s.bundle_endpoint is not None and s.bundle_endpoint.profile not in _PROFILES:
            self.bad(
                f"{p}.bundle_endpoint.profile",
                f"{s.bundle_endpoint.profile!r} is not a SPIRE bundle endpoint profile; "
                f"use https_spiffe or https_web",
            )
        self._datastore(f"{p}.datastore", s.datastore)
        if s.kubernetes is not None:
            k = s.kubernetes
            self._placement(f"{p}.kubernetes", k.cluster, k.namespace)
            if k.datastore is not None:
                self._datastore(f"{p}.kubernetes.datastore", k.datastore)
        self._upstream_authority(p, s)
        self._hardening(p, s)
        self._replicas(p, s)
        if not s.node_attestors:
            self.bad(f"{p}.node_attestors", "a server needs at least one node attestor")
        for na in s.node_attestors:
            if isinstance(na, K8sPsatAttestor):
                for c in na.clusters:
                    if c not in self.clusters:
                        self.bad(
                            f"{p}.node_attestors.k8s_psat.clusters[{c}]",
                            f"unknown cluster {c!r}; declare it under clusters",
                        )

    def _replicas(self, p: str, s: Server) -> None:
        """More than one replica needs a datastore every replica reaches and its own keys
        in each replica (see ``server_key_manager`` for when memory keys are safe)."""
        k = s.kubernetes
        counts = [(f"{p}.replicas", s.replicas)]
        if k is not None and k.replicas is not None:
            counts.append((f"{p}.kubernetes.replicas", k.replicas))
        for path, n in counts:
            if n < 1:
                self.bad(path, f"{n} is not a replica count; a server runs at least 1")
        if k is not None and k.key_manager is not None and k.key_manager not in ("disk", "memory"):
            self.bad(f"{p}.kubernetes.key_manager", f"{k.key_manager!r} is not one of disk, memory")
        for target in TARGETS:
            n = server_replicas(s, target)
            if n <= 1:
                continue
            kk = k if target == "kubernetes" else None
            where = f" on {target}" if s.replicas <= 1 else ""
            replicas_path = (
                f"{p}.kubernetes.replicas"
                if kk is not None and kk.replicas is not None
                else f"{p}.replicas"
            )
            if not shared_datastore(s, target):
                ds_path = (
                    f"{p}.kubernetes.datastore"
                    if kk is not None and kk.datastore
                    else f"{p}.datastore"
                )
                self.bad(
                    replicas_path,
                    f"{n} replicas{where} need a shared SQL datastore (mysql or postgres) in "
                    f"{ds_path}; SQLite is a file only one replica can hold",
                )
            if server_key_manager(s, target) == "memory" and s.upstream_authority is None:
                km_path = (
                    f"{p}.kubernetes.key_manager"
                    if kk is not None and kk.key_manager is not None
                    else f"{p}.key_manager"
                )
                self.bad(
                    km_path,
                    f"memory keys with {n} replicas{where} and a self-signed CA: each replica "
                    "restart would add a new root to the bundle, and SVIDs it signs are "
                    "refused until every peer has it; use disk (a volume per replica) or an "
                    "upstream_authority",
                )

    def _hardening(self, p: str, s: Server) -> None:
        if s.jwt_issuer is not None:
            url = urlsplit(s.jwt_issuer)
            if url.scheme != "https" or not url.hostname or url.query or url.fragment:
                self.bad(
                    f"{p}.jwt_issuer",
                    f"{s.jwt_issuer!r} is not an https URL without query or fragment "
                    f"(e.g. https://{s.trust_domain.name}); it becomes the JWT-SVIDs' iss claim",
                )
        expired_for = s.prune_attested_nodes_expired_for
        if expired_for is not None and expired_for <= timedelta(0):
            self.bad(
                f"{p}.prune_attested_nodes_expired_for",
                "must be a positive duration (e.g. 24h); set it to null to keep expired nodes",
            )

    def _ttl_within_ca(self, path: str, ttl: timedelta | None, server: Server) -> None:
        if ttl is not None and ttl > server.ca_ttl:
            self.bad(
                path,
                f"SVID TTL {format_duration(ttl)} is longer than the CA TTL "
                f"{format_duration(server.ca_ttl)} of server {server.name!r}; SPIRE would "
                f"cut it short, so lower the TTL or raise ca_ttl",
            )

    def _datastore(self, path: str, ds: object) -> None:
        if isinstance(ds, MySqlDatastore):
            query = ds.dsn.partition("?")[2]
            params = dict(kv.partition("=")[::2] for kv in query.split("&") if kv)
            if params.get("parseTime", "").lower() != "true":
                self.bad(
                    f"{path}.dsn",
                    "MySQL DSN must contain parseTime=true; SPIRE's sql datastore reads "
                    "timestamps as time.Time and fails without it",
                )

    def _upstream_authority(self, p: str, s: Server) -> None:
        ua = s.upstream_authority
        path = f"{p}.upstream_authority"
        if isinstance(ua, DiskUpstreamAuthority):
            cas = {i.name: i for i in (self.t.ca.intermediates if self.t.ca else ())}
            root = self.t.ca.root.name if self.t.ca else None
            if ua.ca == root:
                self.bad(
                    f"{path}.ca",
                    f"{ua.ca!r} is the root; a server must hold its trust domain's "
                    "intermediate so the URI name constraint binds it",
                )
            elif ua.ca not in cas:
                self.bad(f"{path}.ca", f"no intermediate {ua.ca!r} in ca.intermediates")
            elif cas[ua.ca].trust_domain != s.trust_domain:
                self.bad(
                    f"{path}.ca",
                    f"intermediate {ua.ca!r} is constrained to '{cas[ua.ca].trust_domain}' "
                    f"but the server is in '{s.trust_domain}'",
                )
        elif isinstance(ua, SpireUpstreamAuthority):
            upstream = self.servers.get(ua.server)
            if upstream is None:
                self.bad(f"{path}.server", f"unknown server {ua.server!r}")
            elif upstream.name == s.name:
                self.bad(f"{path}.server", "a server cannot be its own upstream")
            elif upstream.trust_domain != s.trust_domain:
                self.bad(
                    f"{path}.server",
                    f"upstream server {ua.server!r} is in '{upstream.trust_domain}' but this "
                    f"server is in '{s.trust_domain}': SPIRE nesting (UpstreamAuthority "
                    f'"spire") only works within one trust domain; use a disk upstream '
                    "authority signed by a shared root plus federation instead",
                )
            agent = self.agents.get(ua.agent)
            if agent is None:
                self.bad(f"{path}.agent", f"unknown agent {ua.agent!r}")
            elif agent.server != ua.server:
                self.bad(
                    f"{path}.agent",
                    f"agent {ua.agent!r} attests to {agent.server!r}, not to the upstream "
                    f"server {ua.server!r}; the nested server fetches its CA through it",
                )

    def _placement(self, path: str, cluster: str, namespace: str) -> None:
        c = self.clusters.get(cluster)
        if c is None:
            self.bad(f"{path}.cluster", f"unknown cluster {cluster!r}; declare it under clusters")
        elif namespace not in c.namespaces:
            self.bad(
                f"{path}.namespace",
                f"namespace {namespace!r} is not declared in cluster {cluster!r} "
                f"(declared: {', '.join(c.namespaces) or 'none'})",
            )

    # --- agents -----------------------------------------------------------------------

    def _agent(self, a: Agent) -> None:
        p = f"agents[{a.name}]"
        server = self.servers.get(a.server)
        if server is None:
            self.bad(f"{p}.server", f"unknown server {a.server!r}")
        for att in a.workload_attestors:
            if att not in WORKLOAD_ATTESTORS:
                self.bad(
                    f"{p}.workload_attestors",
                    f"{att!r} is not supported; use {', '.join(WORKLOAD_ATTESTORS)}",
                )
        if not a.workload_attestors:
            self.bad(f"{p}.workload_attestors", "an agent needs at least one workload attestor")
        if a.log_level not in _LOG_LEVELS:
            self.bad(f"{p}.log_level", f"{a.log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
        k = a.kubernetes
        if k is None:
            return
        self._placement(f"{p}.kubernetes", k.cluster, k.namespace)
        self._kubelet(f"{p}.kubernetes", k)
        if k.node_attestor not in ("join_token", "k8s_psat"):
            self.bad(f"{p}.kubernetes.node_attestor", f"{k.node_attestor!r} is not supported")
        joins = server is not None and any(
            isinstance(n, JoinTokenAttestor) for n in server.node_attestors
        )
        if k.node_attestor == "join_token" and server is not None and not joins:
            self.bad(
                f"{p}.kubernetes.node_attestor",
                f"join_token needs server {server.name!r} to run a join_token node attestor",
            )
        if k.node_attestor == "k8s_psat" and server is not None:
            psat = [n for n in server.node_attestors if isinstance(n, K8sPsatAttestor)]
            if not any(k.cluster in n.clusters for n in psat):
                self.bad(
                    f"{p}.kubernetes.node_attestor",
                    f"k8s_psat needs server {server.name!r} to run a k8s_psat node attestor "
                    f"listing cluster {k.cluster!r}",
                )

    def _kubelet(self, p: str, k: AgentKubernetes) -> None:
        """How the k8s attestor trusts and may ask the kubelet (see AgentKubernetes)."""
        if k.kubelet_verification not in get_args(KubeletVerification):
            self.bad(
                f"{p}.kubelet_verification",
                f"{k.kubelet_verification!r} is not one of: "
                f"{', '.join(get_args(KubeletVerification))}",
            )
        if k.kubelet_access not in get_args(KubeletAccess):
            self.bad(
                f"{p}.kubelet_access",
                f"{k.kubelet_access!r} is not one of: {', '.join(get_args(KubeletAccess))}",
            )
        path = k.kubelet_ca_host_path
        if k.kubelet_verification == "host-ca":
            if not path:
                self.bad(
                    f"{p}.kubelet_ca_host_path",
                    "kubelet_verification host-ca needs the CA file's path on the nodes",
                )
            elif not PurePosixPath(path).is_absolute() or path.endswith("/"):
                self.bad(f"{p}.kubelet_ca_host_path", f"{path!r} is not an absolute file path")
        elif path is not None:
            self.bad(
                f"{p}.kubelet_ca_host_path",
                f"is only read with kubelet_verification host-ca (it is "
                f"{k.kubelet_verification!r})",
            )

    # --- workloads --------------------------------------------------------------------

    def _kubernetes_agent(self, w: Workload) -> None:
        """``kubernetes.agent`` stands in for ``agent`` on Kubernetes: it must be an agent
        in a cluster, of the same server (the SPIFFE ID is that server's to mint)."""
        k = w.kubernetes
        if k is None or k.agent is None:
            return
        path = f"workloads[{w.name}].kubernetes.agent"
        other, mine = self.agents.get(k.agent), self.agents.get(w.agent)
        if other is None:
            self.bad(path, f"unknown agent {k.agent!r}")
        elif other.kubernetes is None:
            self.bad(path, f"agent {k.agent!r} has no kubernetes: it runs on no cluster")
        elif mine is not None and other.server != mine.server:
            self.bad(path, f"agent {k.agent!r} belongs to server {other.server!r}, not to "
                           f"{mine.server!r} of agent {w.agent!r}: that server mints the ID")

    def _workload(self, w: Workload) -> None:
        p = f"workloads[{w.name}]"
        spiffe_id: SpiffeId | None = None
        try:
            spiffe_id = w.parsed_spiffe_id
        except SpiffeIdError as e:
            self.bad(f"{p}.spiffe_id", str(e))
        agent = self.agents.get(w.agent)
        server = self.servers.get(agent.server) if agent else None
        if agent is None:
            self.bad(f"{p}.agent", f"unknown agent {w.agent!r}")
        if (
            spiffe_id is not None
            and server is not None
            and spiffe_id.trust_domain != server.trust_domain
        ):
            self.bad(
                f"{p}.spiffe_id",
                f"{w.spiffe_id} is not in trust domain '{server.trust_domain}' of server "
                f"{server.name!r} (via agent {w.agent!r}); a server only mints IDs of "
                "its own trust domain",
            )
        if agent is not None and (agent.name, w.selectors, w.local_selectors) not in self._sound:
            found = len(self.problems)
            self._selectors(f"{p}.selectors", w.selectors, agent.workload_attestors, agent)
            if w.local_selectors:
                self._local_selectors(p, w, agent)
            if len(self.problems) == found:
                # these rules read only the agent and the selectors: a combination found
                # sound once is sound for every workload that has it (50k share one)
                self._sound.add((agent.name, w.selectors, w.local_selectors))
        if not w.selectors:
            self.bad(f"{p}.selectors", "a workload needs at least one selector")
        for i, td in enumerate(w.federates_with):
            path = f"{p}.federates_with[{i}]"
            self._known_trust_domain(path, td)
            if server is not None and td == server.trust_domain:
                self.bad(path, f"'{td}' is the workload's own trust domain")
            elif (
                server is not None
                and td in self.trust_domains
                and not any(f.trust_domain == td for f in self.t.federations_of(server.name))
            ):
                self.bad(
                    path,
                    f"server {server.name!r} has no federation relationship with '{td}', "
                    "so SPIRE would refuse the entry",
                )
        if server is not None and (w.x509_svid_ttl is not None or w.jwt_svid_ttl is not None):
            self._ttl_within_ca(f"{p}.x509_svid_ttl", w.x509_svid_ttl, server)
            self._ttl_within_ca(f"{p}.jwt_svid_ttl", w.jwt_svid_ttl, server)
        if w.kubernetes is not None and agent is not None and agent.kubernetes is not None:
            self._placement(f"{p}.kubernetes", agent.kubernetes.cluster, w.kubernetes.namespace)

    def _local_selectors(self, p: str, w: Workload, agent: Agent) -> None:
        local = self._local_attestors.get(agent.name)
        if local is None:  # once per agent, not once per workload
            local = self._local_attestors[agent.name] = agent_workload_attestors(
                self.t, agent, "local"
            )
        self._selectors(f"{p}.local_selectors", w.local_selectors, local, agent)

    def _selectors(
        self, path: str, selectors: tuple[str, ...], attestors: tuple[str, ...], agent: Agent
    ) -> None:
        for sel in selectors:
            kind, sep, value = sel.partition(":")
            if not sep or not kind or not value:
                self.bad(path, f"selector {sel!r} must look like 'type:value' (e.g. unix:uid:0)")
            elif kind not in attestors:
                self.bad(
                    path,
                    f"selector {sel!r} needs the {kind!r} workload attestor, but agent "
                    f"{agent.name!r} runs only {', '.join(attestors) or 'none'} here",
                )

    # --- federation -------------------------------------------------------------------

    def _federations(self) -> None:
        seen: set[tuple[str, TrustDomain]] = set()
        for f in self.t.federations:
            p = f"federations[{f.server}->{f.trust_domain}]"
            server = self.servers.get(f.server)
            if server is None:
                self.bad(f"{p}.server", f"unknown server {f.server!r}")
            if (f.server, f.trust_domain) in seen:
                self.bad(p, "duplicate federation relationship")
            seen.add((f.server, f.trust_domain))
            if f.profile not in _PROFILES:
                self.bad(f"{p}.profile", f"{f.profile!r} is not one of https_spiffe, https_web")
            self._known_trust_domain(f"{p}.trust_domain", f.trust_domain)
            if server is not None and f.trust_domain == server.trust_domain:
                self.bad(
                    f"{p}.trust_domain",
                    f"server {f.server!r} cannot federate with its own trust domain",
                )
            owner = bundle_endpoint_owner(self.t, f.trust_domain)
            if f.endpoint_url is None:
                if f.trust_domain in self.trust_domains and owner is None:
                    self.bad(
                        f"{p}.endpoint_url",
                        f"no server of '{f.trust_domain}' serves a bundle endpoint; "
                        "give endpoint_url explicitly",
                    )
            elif not f.endpoint_url.lower().startswith("https://"):
                self.bad(f"{p}.endpoint_url", "SPIRE requires an https:// bundle endpoint URL")
            if (
                owner is not None
                and owner.bundle_endpoint is not None
                and f.endpoint_url is None
                and owner.bundle_endpoint.profile != f.profile
            ):
                self.bad(
                    f"{p}.profile",
                    f"{f.profile!r} does not match the {owner.bundle_endpoint.profile!r} "
                    f"bundle endpoint of server {owner.name!r}",
                )
            if f.endpoint_spiffe_id is not None:
                if f.profile != "https_spiffe":
                    self.bad(f"{p}.endpoint_spiffe_id", "only meaningful with https_spiffe")
                try:
                    sid = SpiffeId.parse(f.endpoint_spiffe_id)
                except SpiffeIdError as e:
                    self.bad(f"{p}.endpoint_spiffe_id", str(e))
                else:
                    if sid.trust_domain != f.trust_domain:
                        self.bad(
                            f"{p}.endpoint_spiffe_id",
                            f"{f.endpoint_spiffe_id} is not in '{f.trust_domain}'",
                        )

    # --- CA ---------------------------------------------------------------------------

    def _ca(self) -> None:
        if self.t.ca is None:
            return
        names = Counter([self.t.ca.root.name, *(i.name for i in self.t.ca.intermediates)])
        for name, count in sorted(names.items()):
            if count > 1:
                self.bad(f"ca[{name}]", f"CA name is used {count} times")
        for i in self.t.ca.intermediates:
            p = f"ca.intermediates[{i.name}]"
            self._known_trust_domain(f"{p}.trust_domain", i.trust_domain)
            if i.ttl > self.t.ca.root.ttl:
                self.bad(f"{p}.ttl", "an intermediate cannot outlive the root that signs it")
            if i.path_length < 1:
                self.bad(
                    f"{p}.path_length",
                    "must be at least 1 to leave room for SPIRE's own signing CA",
                )

    # --- ports ------------------------------------------------------------------------

    def _ports(self) -> None:
        owners: dict[tuple[str, int], list[str]] = {}

        def claim(host: str, port: int | None, path: str) -> None:
            if port is None:
                return
            if not 0 < port < 65536:
                self.bad(path, f"port {port} is outside 1-65535")
            owners.setdefault((host, port), []).append(path)

        for s in self.t.servers:
            p = f"servers[{s.name}]"
            claim(s.host, s.ports.api, f"{p}.ports.api")
            claim(s.host, s.ports.health, f"{p}.ports.health")
            claim(s.host, s.ports.telemetry, f"{p}.ports.telemetry")
            if s.bundle_endpoint is not None:
                claim(s.host, s.ports.federation, f"{p}.ports.federation")
            if s.kubernetes is not None:
                for kind in ("api", "federation"):
                    np = getattr(s.kubernetes.node_ports, kind)
                    self._node_port(np, f"{p}.kubernetes.node_ports.{kind}")
                    claim("<nodeport>", np, f"{p}.kubernetes.node_ports.{kind}")
        for a in self.t.agents:
            claim(a.host, a.health_port, f"agents[{a.name}].health_port")
            claim(a.host, a.telemetry_port, f"agents[{a.name}].telemetry_port")
        for w in self.t.workloads:
            if w.kubernetes is not None:
                path = f"workloads[{w.name}].kubernetes.node_port"
                self._node_port(w.kubernetes.node_port, path)
                claim("<nodeport>", w.kubernetes.node_port, path)
                self._kubernetes_agent(w)
                storage = w.kubernetes.storage
                if storage is not None and not _QUANTITY.fullmatch(storage):
                    self.bad(f"workloads[{w.name}].kubernetes.storage",
                             f"{storage!r} is not a storage size like 64Mi or 1Gi")  # fmt: skip
        for w in self.t.workloads:
            if w.run is not None:
                claim("127.0.0.1", w.run.metrics_port, f"workloads[{w.name}].run.metrics_port")
        m = self.t.monitoring
        if m is not None:
            # NodePort numbers by default, but --port-base moves them locally like the
            # servers' ports (so no NodePort range check here)
            for kind in ("prometheus_port", "alertmanager_port"):
                claim("127.0.0.1", getattr(m, kind), f"monitoring.{kind}")
        for (host, port), paths in owners.items():
            if len(paths) > 1:
                where = "NodePort" if host == "<nodeport>" else f"{host}:{port}"
                for path in paths:
                    others = ", ".join(x for x in paths if x != path)
                    self.bad(path, f"port collision on {where} {port} with {others}")

    def _node_port(self, port: int | None, path: str) -> None:
        if port is not None and port not in _NODE_PORT_RANGE:
            self.bad(path, f"NodePort {port} is outside Kubernetes' default range 30000-32767")

    # --- kubernetes options -----------------------------------------------------------

    def _kubernetes(self) -> None:
        k = self.t.kubernetes
        if k.registration not in ("controller-manager", "spire-api"):
            self.bad("kubernetes.registration", "must be controller-manager or spire-api")
        if k.rbac not in ("cluster", "namespace"):
            self.bad("kubernetes.rbac", "must be cluster or namespace")
        if k.registration == "spire-api":
            for s in self.t.servers:
                if s.kubernetes is not None and s.kubernetes.controller_manager:
                    self.bad(
                        f"servers[{s.name}].kubernetes.controller_manager",
                        "the controller manager registers through CRDs; with "
                        "kubernetes.registration: spire-api turn it off",
                    )
        if k.rbac != "namespace":
            return
        for a in self.t.agents:
            if a.kubernetes is not None and a.kubernetes.node_attestor == "k8s_psat":
                self.bad(
                    f"agents[{a.name}].kubernetes.node_attestor",
                    "k8s_psat needs cluster-scoped RBAC (TokenReview, nodes); with "
                    "kubernetes.rbac: namespace use join_token",
                )
            if "k8s" in a.workload_attestors and a.kubernetes is not None:
                self.bad(
                    f"agents[{a.name}].workload_attestors",
                    "the k8s workload attestor needs cluster-scoped RBAC (nodes/pods); with "
                    "kubernetes.rbac: namespace use unix",
                )

    def _agent_namespaces(self) -> None:
        """Agents need hostPID and hostPath, so their namespace is Pod Security
        "privileged"; anything else placed there would get the same licence."""
        hosts = {
            (c.name, ns): "agents"
            for c in self.t.clusters
            for ns in agent_namespaces(self.t, c.name)
        }
        for s in self.t.servers:
            k = s.kubernetes
            if k is not None and (k.cluster, k.namespace) in hosts:
                self.bad(
                    f"servers[{s.name}].kubernetes.namespace",
                    f"namespace {k.namespace!r} hosts agents and is therefore privileged; "
                    "give the server a namespace of its own that can enforce restricted",
                )
        for w in self.t.workloads:
            agent = self.agents.get(w.agent)
            if w.kubernetes is None or agent is None or agent.kubernetes is None:
                continue
            if (agent.kubernetes.cluster, w.kubernetes.namespace) in hosts:
                self.bad(
                    f"workloads[{w.name}].kubernetes.namespace",
                    f"namespace {w.kubernetes.namespace!r} hosts agents and is therefore "
                    "privileged; run the workload in a namespace without agents",
                )

    def _server_namespaces(self) -> None:
        """A server's namespace holds its signing CA key and datastore Secrets, and whoever
        may create pods there may mount them and mint any SVID of the trust domain. So no
        workload runs there, whether placed by ``kubernetes.namespace`` or selected by a
        ``k8s:ns:`` selector (pods a user starts there would get its identity).

        One exception, and only it: a downstream workload that is the nested server itself,
        i.e. the namespace's server takes its upstream authority through this workload's
        agent (preset ``nested``: ``spire-child-server`` in ``spire-child``)."""
        owners: dict[tuple[str, str], Server] = {}
        for s in self.t.servers:
            if s.kubernetes is not None:
                owners.setdefault((s.kubernetes.cluster, s.kubernetes.namespace), s)
        for w in self.t.workloads:
            agent = self.agents.get(w.agent)
            if agent is None or agent.kubernetes is None:
                continue
            namespaces = [w.kubernetes.namespace] if w.kubernetes is not None else []
            namespaces += [sel[len("k8s:ns:"):] for sel in w.selectors
                           if sel.startswith("k8s:ns:")]  # fmt: skip
            for ns in dict.fromkeys(namespaces):
                server = owners.get((agent.kubernetes.cluster, ns))
                if server is None or _is_nested_server(w, server):
                    continue
                placed = w.kubernetes is not None and w.kubernetes.namespace == ns
                where = "kubernetes.namespace" if placed else "selectors"
                self.bad(
                    f"workloads[{w.name}].{where}",
                    f"workload {w.name!r} would run in namespace {ns!r}, the namespace of "
                    f"server {server.name!r}: whoever may create pods there may mount the "
                    "server's CA key and datastore Secrets; give workloads a namespace "
                    "without a server",
                )

    def _bundle_configmaps(self) -> None:
        """Two servers publishing one ConfigMap name into one namespace would overwrite
        each other's bundle, and an agent would trust the wrong server."""
        owners: dict[tuple[str, str, str], str] = {}
        for s in self.t.servers:
            k = s.kubernetes
            if k is None:
                continue
            for ns in bundle_publisher_namespaces(self.t, s):
                key = (k.cluster, ns, k.bundle_configmap)
                other = owners.setdefault(key, s.name)
                if other != s.name:
                    self.bad(
                        f"servers[{s.name}].kubernetes.bundle_configmap",
                        f"server {other!r} already publishes its bundle as ConfigMap "
                        f"{k.bundle_configmap!r} in namespace {ns!r} of cluster {k.cluster!r}; "
                        "pick another name",
                    )


def _is_nested_server(w: Workload, server: Server) -> bool:
    """Whether ``w`` is ``server`` itself: the downstream entry through which ``server``
    (UpstreamAuthority "spire") gets its CA from its parent's agent."""
    ua = server.upstream_authority
    return w.downstream and isinstance(ua, SpireUpstreamAuthority) and ua.agent == w.agent
