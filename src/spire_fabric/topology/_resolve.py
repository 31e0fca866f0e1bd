"""Values that depend on the target: what each element becomes on ``local`` or ``kubernetes``.

Renderers and runtimes ask here instead of re-deriving, so a server address or a bundle
endpoint URL is computed in exactly one place.
"""

from __future__ import annotations

from spire_fabric.identity import TrustDomain, spire_server_id
from spire_fabric.topology._model import (
    Agent,
    AgentNodeAttestor,
    Datastore,
    Federation,
    JoinTokenAttestor,
    K8sPsatAttestor,
    KeyManagerKind,
    NodeAttestor,
    Server,
    Sidecar,
    SqliteDatastore,
    Target,
    Topology,
    Workload,
)
from spire_fabric.topology._workload_run import placeholders


def effective_datastore(server: Server, target: Target) -> Datastore:
    """The Kubernetes override when there is one on that target, else the server's own."""
    if target == "kubernetes" and server.kubernetes and server.kubernetes.datastore:
        return server.kubernetes.datastore
    return server.datastore


def server_replicas(server: Server, target: Target) -> int:
    """How many replicas of ``server`` run on ``target``: the Kubernetes override there,
    else the server's own count."""
    if target == "kubernetes" and server.kubernetes and server.kubernetes.replicas is not None:
        return server.kubernetes.replicas
    return server.replicas


def server_key_manager(server: Server, target: Target) -> KeyManagerKind:
    """The server's KeyManager on ``target``: the Kubernetes override there, else its own.

    Either way every replica holds its own keys (spiffe/spire#3582): ``disk`` on the
    replica's own volume (a StatefulSet claim per pod), ``memory`` in the process. Memory
    is safe only under an UpstreamAuthority: a replica that restarts mints a new CA that
    the upstream signs, so the trust bundle does not change. With a self-signed CA each
    restart would add a new root that agents and federated peers must learn before they
    trust the SVIDs it signs, so validation refuses memory keys there for replicas > 1.
    """
    if target == "kubernetes" and server.kubernetes and server.kubernetes.key_manager:
        return server.kubernetes.key_manager
    return server.key_manager


def shared_datastore(server: Server, target: Target) -> bool:
    """Whether every replica of ``server`` on ``target`` would read one datastore: MySQL
    or PostgreSQL are served over the network; SQLite is a file in one replica's data dir."""
    return not isinstance(effective_datastore(server, target), SqliteDatastore)


def server_node_attestors(
    topology: Topology, server: Server, target: Target
) -> tuple[NodeAttestor, ...]:
    """The attestors ``server`` enables on ``target``: only those one of its agents uses
    there (:func:`agent_node_attestor`).

    An enabled attestor nobody uses is an open door: on Kubernetes a leaked join token or
    projected service-account token would attest a node from anywhere that reaches the
    API. Locally every agent uses a join token, so k8s_psat is never enabled there. A
    nested child server is a downstream workload of its upstream, not an agent, so it
    needs none of the upstream's attestors.
    """
    agents = topology.agents_of(server.name)
    out: list[NodeAttestor] = []
    for na in server.node_attestors:
        if isinstance(na, JoinTokenAttestor):
            if any(agent_node_attestor(a, target) == "join_token" for a in agents):
                out.append(na)
            continue
        # k8s_psat: only the clusters where one of its agents attests with it (SPIRE also
        # refuses a cluster whose service-account allow list would be empty)
        psat = {
            a.kubernetes.cluster
            for a in agents
            if a.kubernetes is not None and agent_node_attestor(a, target) == "k8s_psat"
        }
        clusters = tuple(c for c in na.clusters if c in psat)
        if clusters:
            out.append(K8sPsatAttestor(clusters))
    return tuple(out)


def agent_node_attestor(agent: Agent, target: Target) -> AgentNodeAttestor:
    """How ``agent`` attests on ``target``: its Kubernetes attestor there, a join token locally."""
    if target == "kubernetes" and agent.kubernetes is not None:
        return agent.kubernetes.node_attestor
    return "join_token"


def agent_workload_attestors(topology: Topology, agent: Agent, target: Target) -> tuple[str, ...]:
    """The workload attestors ``agent`` runs on ``target``.

    The k8s attestor needs a kubelet, which only exists on Kubernetes. There, the unix
    attestor is dropped from an agent that also runs k8s when every selector of its
    workloads is a ``k8s:`` one: nothing asks for its uid/gid/path selectors, and without
    it a ``unix:uid:…`` entry made later by hand cannot match every pod that happens to
    run as that uid on the node (pods of unrelated teams share uids). An agent without
    workloads in the topology gets k8s only as well (the entries the controller manager
    makes from ClusterSPIFFEIDs are k8s selectors)."""
    if target == "local":
        return tuple(a for a in agent.workload_attestors if a != "k8s")
    if agent.kubernetes is None or "k8s" not in agent.workload_attestors:
        return agent.workload_attestors
    selectors = [
        sel
        for w in topology.workloads
        if w.agent == agent.name
        for sel in workload_selectors(w, target)
    ]
    if all(sel.startswith("k8s:") for sel in selectors):
        return tuple(a for a in agent.workload_attestors if a != "unix")
    return agent.workload_attestors


def agent_key_manager(agent: Agent, target: Target) -> KeyManagerKind:
    """``memory`` for a k8s_psat agent on Kubernetes: it re-attests with a fresh projected
    token whenever it restarts, so a key on disk would only be a secret left on the node.
    A join_token agent keeps ``disk``: its token is single-use, so after a restart it can
    only come back with the SVID and key it saved."""
    return "memory" if agent_node_attestor(agent, target) == "k8s_psat" else "disk"


def posture_warnings(topology: Topology, target: Target) -> tuple[str, ...]:
    """What the topology opted into that weakens an agent on ``target``: `deploy plan` and
    `deploy verify` print one line per agent, so an opt-in is never forgotten."""
    out: list[str] = []
    if target != "kubernetes":
        return ()
    for a in topology.agents:
        k = a.kubernetes
        if k is None or "k8s" not in agent_workload_attestors(topology, a, target):
            continue
        if k.kubelet_verification == "skip":
            out.append(
                f"agent {a.name}: kubelet_verification is skip: its k8s workload attestor "
                "sends its token to the kubelet and believes its pod list without "
                "authenticating it (anyone on that path can forge attestations)"
            )
        if k.kubelet_access == "nodes/proxy":
            out.append(
                f"agent {a.name}: kubelet_access is nodes/proxy: its service account may "
                "use every kubelet endpoint (exec included), not only /pods"
            )
    return tuple(out)


def workload_selectors(workload: Workload, target: Target) -> tuple[str, ...]:
    """The selectors of ``workload``'s entry on ``target`` (local ones may differ: unix uid
    instead of k8s service account)."""
    if target == "local" and workload.local_selectors:
        return workload.local_selectors
    return workload.selectors


def workload_uses_files(workload: Workload) -> bool:
    """Whether the workload's run description names its managed files (``{files}``), so
    each target keeps a place for them (``Deployment.workload_file``)."""
    return any(p.key == "files" for t in _run_texts(workload) for p in placeholders(t))


def _run_texts(workload: Workload) -> list[str]:
    """Every text of the workload's run description that may hold placeholders."""
    texts = list(workload.kubernetes.command) if workload.kubernetes else []
    if workload.run is not None:
        run = workload.run
        texts += [*run.args, *run.command, *(e.partition("=")[2] for e in run.env)]
    return texts


def workload_callers(topology: Topology, workload: Workload) -> tuple[Workload, ...]:
    """The workloads that call ``workload``: those whose run description names its URL
    (``{url:NAME}``), in topology order.

    Why derived and not declared: a URL placeholder is the only way a workload of the
    topology learns where another one listens (each target fills in a different address),
    so the run descriptions already say who calls whom; a second list could only disagree
    with them. A ``{port:NAME}`` or ``{spiffe_id:NAME}`` alone does not make a caller (it
    names an identity to expect or a number, not an address to dial). Sidecars add the
    same kind of facts: a client sidecar's ``target`` is dialled, and the workloads a
    server sidecar's allow lists admit are its callers (so the network admits exactly who
    the sidecar admits)."""
    return tuple(
        w
        for w in topology.workloads
        if w.name != workload.name
        and (
            any(
                p.key == "url" and p.workload == workload.name
                for t in _run_texts(w)
                for p in placeholders(t)
            )
            # a client sidecar's target is an address it dials, like a URL placeholder
            or any(s.mode == "client" and s.target == workload.name for s in w.sidecars)
            # a server sidecar's allow list names who may call: the network admits them too
            or any(s.mode == "server" and _allowed(s, w) for s in workload.sidecars)
        )
    )


def _allowed(sidecar: Sidecar, caller: Workload) -> bool:
    td = caller.spiffe_id.removeprefix("spiffe://").split("/", 1)[0]
    return caller.spiffe_id in sidecar.allow_ids or any(
        str(t) == td for t in sidecar.allow_trust_domains)


def controller_manager_enabled(topology: Topology, server: Server) -> bool:
    """Whether spire-controller-manager registers ``server``'s workloads on Kubernetes."""
    return (
        topology.kubernetes.registration == "controller-manager"
        and server.kubernetes is not None
        and server.kubernetes.controller_manager
    )


def config_federations(
    topology: Topology, server: Server, target: Target
) -> tuple[Federation, ...]:
    """The relationships server.conf declares as ``federates_with``.

    None on Kubernetes when the server's controller manager renders them as
    ClusterFederatedTrustDomains: SPIRE 1.13.3 merges server.conf's ``federates_with`` over
    the datastore's relationships (pkg/server/server.go, MergeTrustDomainConfigSources),
    so a second copy in the config would silently override what the controller manager
    reconciles. Everywhere else (local, no controller manager) the config is the owner.
    """
    if target == "kubernetes" and controller_manager_enabled(topology, server):
        return ()
    return topology.federations_of(server.name)


def agent_namespaces(topology: Topology, cluster: str) -> tuple[str, ...]:
    """Namespaces of ``cluster`` that host agents: the only ones that need host access."""
    return tuple(
        sorted(
            {
                a.kubernetes.namespace
                for a in topology.agents
                if a.kubernetes is not None and a.kubernetes.cluster == cluster
            }
        )
    )


def bundle_publisher_namespaces(topology: Topology, server: Server) -> tuple[str, ...]:
    """Where the server's k8s_configmap BundlePublisher writes its bundle: the namespaces
    of its agents in its own cluster, because agents read trust_bundle_path from that
    ConfigMap. Nobody else reads it, so the server's own namespace is not among them."""
    k = server.kubernetes
    if k is None:
        return ()
    return tuple(
        sorted(
            {
                a.kubernetes.namespace
                for a in topology.agents_of(server.name)
                if a.kubernetes is not None and a.kubernetes.cluster == k.cluster
            }
        )
    )


def psat_allow_list(topology: Topology, server: Server, cluster: str) -> tuple[str, ...]:
    """``namespace:service_account`` of every agent of ``server`` attesting with k8s_psat
    in ``cluster``; sorted so the rendered HCL is stable."""
    entries = {
        f"{a.kubernetes.namespace}:{a.kubernetes.service_account}"
        for a in topology.agents_of(server.name)
        if a.kubernetes is not None
        and a.kubernetes.cluster == cluster
        and a.kubernetes.node_attestor == "k8s_psat"
    }
    return tuple(sorted(entries))


def jwt_issuer(server: Server) -> str:
    """The ``iss`` claim of ``server``'s JWT-SVIDs: its own setting, else the URL of its
    trust domain, so a relying party can tell which trust domain minted a token."""
    return server.jwt_issuer or f"https://{server.trust_domain.name}"


def api_node_port(topology: Topology, server: Server) -> int | None:
    """The NodePort that publishes ``server``'s API on Kubernetes, or None when nothing
    needs it.

    Agents and nested servers in the server's own cluster dial the Service's DNS name and
    the installer uses a port-forward, so the API is published outside the cluster only
    for a caller outside it (an agent or nested server in another cluster, or in none);
    ``ServerNodePorts.api`` is the port it then gets. Publishing it otherwise would open
    node attestation and the API to every network that reaches a node.
    """
    k = server.kubernetes
    if k is None or k.node_ports.api is None:
        return None
    callers: list[Server | Agent] = [*topology.agents_of(server.name)]
    callers += _nested_servers_of(topology, server)
    if any(_cluster_of(topology, c) != k.cluster for c in callers):
        return k.node_ports.api
    return None


def _nested_servers_of(topology: Topology, upstream: Server) -> tuple[Server, ...]:
    from spire_fabric.topology._model import SpireUpstreamAuthority

    return tuple(
        s
        for s in topology.servers
        if isinstance(s.upstream_authority, SpireUpstreamAuthority)
        and s.upstream_authority.server == upstream.name
    )


def service_host(server: Server) -> str:
    """In-cluster DNS name of a server: the Service is named after the server."""
    assert server.kubernetes is not None
    return f"{server.name}.{server.kubernetes.namespace}.svc"


def _cluster_of(topology: Topology, server_or_agent: Server | Agent) -> str | None:
    k = server_or_agent.kubernetes
    return k.cluster if k is not None else None


def server_address_for(topology: Topology, agent: Agent, target: Target) -> tuple[str, int]:
    """Where ``agent`` dials its server: same cluster -> Service DNS, other cluster ->
    the server cluster's node address and API NodePort, local -> host and API port."""
    server = topology.server(agent.server)
    return _reach(topology, server, _cluster_of(topology, agent), target, "api")


def upstream_address_for(topology: Topology, server: Server, target: Target) -> tuple[str, int]:
    """Where a nested server dials its upstream server (UpstreamAuthority "spire")."""
    from spire_fabric.topology._model import SpireUpstreamAuthority

    ua = server.upstream_authority
    assert isinstance(ua, SpireUpstreamAuthority)
    upstream = topology.server(ua.server)
    return _reach(topology, upstream, _cluster_of(topology, server), target, "api")


def bundle_endpoint_owner(topology: Topology, trust_domain: TrustDomain | str) -> Server | None:
    for s in topology.servers_of(trust_domain):
        if s.bundle_endpoint is not None:
            return s
    return None


def bundle_endpoint_url(topology: Topology, fed: Federation, target: Target) -> str:
    """Where ``fed.server`` fetches the federated bundle on ``target``: the explicit URL, or
    the other server's bundle endpoint as that target exposes it."""
    if fed.endpoint_url:
        return fed.endpoint_url
    owner = bundle_endpoint_owner(topology, fed.trust_domain)
    if owner is None:
        raise ValueError(
            f"no server of {fed.trust_domain!r} serves a bundle endpoint; set endpoint_url"
        )
    here = topology.server(fed.server)
    host, port = _reach(topology, owner, _cluster_of(topology, here), target, "federation")
    return f"https://{host}:{port}"


def endpoint_spiffe_id(fed: Federation) -> str:
    """SPIRE serves its bundle endpoint with the server SVID, ``/spire/server``."""
    return fed.endpoint_spiffe_id or str(spire_server_id(fed.trust_domain))


def _reach(
    topology: Topology, server: Server, from_cluster: str | None, target: Target, port: str
) -> tuple[str, int]:
    container_port = server.ports.api if port == "api" else server.ports.federation
    if target == "local" or server.kubernetes is None:
        return server.host, container_port
    if from_cluster == server.kubernetes.cluster:
        return service_host(server), container_port
    node_port = (
        server.kubernetes.node_ports.api
        if port == "api"
        else server.kubernetes.node_ports.federation
    )
    if node_port is None:
        raise ValueError(
            f"server {server.name!r} is reached from another cluster but has no {port} NodePort"
        )
    node = topology.cluster(server.kubernetes.cluster).effective_node_address
    return node, node_port
