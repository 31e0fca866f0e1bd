"""Ready-made topologies: ``basic``, ``enterprise``, ``nested``, ``crd-free``, and ``scale``
with its parameters after a colon (``scale:agents=20,workloads=200``; see ``_scale``).

``enterprise`` follows DESIGN.md "The enterprise topology, resolved" to the letter; its
numbers (ports, NodePorts, TTLs) are the source design's. Locally every server is a host
process, so servers that share container ports get their own loopback address
(127.0.0.1, 127.0.0.2, ...): Linux routes all of 127/8 to lo without configuration.

On Kubernetes every cluster gets one namespace for its agents (``<...>-agents``), apart
from the servers' and workloads' namespaces: it alone is Pod Security "privileged", because
agents and their SPIFFE CSI drivers alone need the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

from spire_fabric.identity import TrustDomain
from spire_fabric.topology._builder import TopologyBuilder
from spire_fabric.topology._model import (
    AgentKubernetes,
    BundleEndpoint,
    DiskUpstreamAuthority,
    HealthProbe,
    IntermediateCa,
    JoinTokenAttestor,
    K8sPsatAttestor,
    LocalRun,
    MySqlDatastore,
    MySqlInstance,
    RootCa,
    ServerKubernetes,
    ServerNodePorts,
    ServerPorts,
    Sidecar,
    SpireUpstreamAuthority,
    Topology,
    Workload,
    WorkloadKubernetes,
)
from spire_fabric.topology._scale import (
    FIRST_WORKLOAD_PORT,
    TRUST_DOMAIN,
    ScaleParameters,
    parse_scale,
)


def _mysql(service: str, namespace: str) -> MySqlDatastore:
    """A per-server MySQL in the server's namespace; the password comes from the
    environment (``-expandEnv``) so it never lands in a ConfigMap."""
    return MySqlDatastore(
        dsn=(
            f"spire:${{SPIRE_DB_PASSWORD}}@tcp({service}.{namespace}.svc:3306)/spire?parseTime=true"
        ),
        instance=MySqlInstance(service=service),
    )


# The three example workloads (``spire_fabric.examples``), described as data: the runtime
# and the verifier know them only through these descriptions. Locally the API listens on
# 30443 and the gateway on its NodePort number, 30080, like the servers on theirs.
_EXAMPLES = "spire_fabric.examples"
_EXAMPLE_RUNS: dict[str, LocalRun] = {
    "enterprise-api": LocalRun(
        module=f"{_EXAMPLES}.enterprise_api",
        args=(
            "--listen", "{listen}",
            "--jwt-audience", "{spiffe_id}",
            # the API's authorization table (examples/enterprise_api/policy.py) by role
            "--grant", "read={spiffe_id:security-gateway}",
            "--grant", "create={spiffe_id:security-gateway}",
            "--grant", "read={spiffe_id:data-processor}",
            "--grant", "report={spiffe_id:data-processor}",
            "--grant", "read=enterprise-root.org",
            # inventory (nginx behind a ghostunnel sidecar), read over mTLS with our SDK
            "--inventory", "{url:inventory}",
            "--inventory-id", "{spiffe_id:inventory}",
            "--metrics-listen", "{metrics_listen}",
        ),
        port=30443,
        metrics_port=8381,
        # data-processor is a caller the API admits: proves identity and authorization
        health=HealthProbe("/health", caller="data-processor", expect=("spiffe_id={spiffe_id}",)),
    ),
    "data-processor": LocalRun(
        module=f"{_EXAMPLES}.data_processor",
        args=(
            "--api", "{url:enterprise-api}",
            "--api-id", "{spiffe_id:enterprise-api}",
            "--interval", "5",
            "--metrics-listen", "{metrics_listen}",
        ),
        metrics_port=8382,
    ),
    "security-gateway": LocalRun(
        module=f"{_EXAMPLES}.security_gateway",
        args=(
            "--listen", "{listen}",
            "--upstream", "{url:enterprise-api}",
            "--upstream-id", "{spiffe_id:enterprise-api}",
            "--allow-trust-domain", "enterprise-root.org",
            # external clients' keys: `issue-key --deployment enterprise` on either target
            "--api-keys", "{files}/api-keys.json",
            "--metrics-listen", "{metrics_listen}",
        ),
        port=30080,
        metrics_port=8383,
        # an upstream workload through the gateway to the API: the API must see the
        # gateway as its caller, so the answer proves the whole path
        health=HealthProbe("/records", caller="upstream-client", expect=("caller={spiffe_id}",)),
    ),
}  # fmt: skip

# nginx (Debian's) serving JSON, behind a server-mode ghostunnel sidecar: {listen} is then
# the app's loopback port, and the probe goes through the sidecar as the gateway.
_INVENTORY_RUN = LocalRun(
    module=f"{_EXAMPLES}.inventory",
    args=("--listen", "{listen}"),
    port=30445,
    health=HealthProbe("/items", caller="security-gateway", expect=("service=inventory",)),
)

# nginx again, terminating mutual TLS itself with SVID files from a files-mode sidecar
# (python -m spire_fabric.helper), which sends it SIGHUP after each rotation.
_CATALOG_RUN = LocalRun(
    module=f"{_EXAMPLES}.inventory",
    args=("--listen", "{listen}", "--name", "catalog", "--tls-dir", "{svid}",
          "--pid-file", "{svid}/nginx.pid"),
    port=30448,
    health=HealthProbe("/items", caller="security-gateway", expect=("service=catalog",)),
)

# The single workload of the smaller presets runs the API example as a plain service that
# admits only itself, so `up` of every preset starts a real workload that verify can call.
_APP_RUN = LocalRun(
    module=f"{_EXAMPLES}.enterprise_api",
    args=("--listen", "{listen}", "--jwt-audience", "{spiffe_id}", "--grant", "read={spiffe_id}"),
    port=30443,
    health=HealthProbe("/health", expect=("spiffe_id={spiffe_id}",)),
)


def basic() -> Topology:
    """One trust domain, one server, one agent, one workload: the smallest real thing."""
    return (
        TopologyBuilder("basic")
        .trust_domain("example.org", "single trust domain")
        .cluster("spire-cluster", ["spire", "spire-agents", "apps"])
        .server(
            "spire-server",
            "example.org",
            bundle_endpoint=None,
            node_attestors=(JoinTokenAttestor(), K8sPsatAttestor(("spire-cluster",))),
            kubernetes=ServerKubernetes(cluster="spire-cluster", namespace="spire"),
        )
        .agent(
            "spire-agent",
            "spire-server",
            workload_attestors=["unix", "k8s"],
            health_port=8180,
            telemetry_port=8280,
            kubernetes=AgentKubernetes(cluster="spire-cluster", namespace="spire-agents"),
        )
        .workload(
            "example-app",
            "spiffe://example.org/ns/apps/sa/example-app",
            agent="spire-agent",
            selectors=["k8s:ns:apps", "k8s:sa:example-app"],
            local_selectors=["unix:uid:1000"],
            run=_APP_RUN,
            kubernetes=WorkloadKubernetes(
                namespace="apps", service_account="example-app", service_port=8443
            ),
        )
        .build()
    )


# SPIRE's smallest refresh hint (bundleutil.MinimumRefreshHint): the peer fetches every
# 15 s (a quarter of it), so a rotated authority crosses the federation within 15 s and
# FederatedBundleStale (no good fetch for a whole hint) fires about a minute after the peer's
# endpoint stops answering, not after SPIRE's default 5 minutes. A fetch is one small HTTPS
# GET: docs/monitoring.md.
_ENTERPRISE_BUNDLE_ENDPOINT = BundleEndpoint(refresh_hint=timedelta(minutes=1))


def enterprise() -> Topology:
    """Upstream and downstream trust domains under one Enterprise Root CA, federated."""
    up_td, down_td = TrustDomain("enterprise-root.org"), TrustDomain("downstream.example.org")
    up_cluster, down_cluster = "upstream-cluster", "downstream-cluster"
    b = (
        TopologyBuilder("enterprise")
        .trust_domain(up_td, "upstream: holds the Enterprise Root's first intermediate")
        .trust_domain(down_td, "downstream: regional intermediate, federated with upstream")
        .cluster(up_cluster, ["spire-upstream", "spire-upstream-agents", "upstream-workloads"])
        .cluster(
            down_cluster, ["spire-downstream", "spire-downstream-agents", "downstream-workloads"]
        )
        .ca(
            RootCa(),
            [
                IntermediateCa(
                    name="enterprise-root-intermediate",
                    trust_domain=up_td,
                    common_name="Enterprise Root Intermediate CA (enterprise-root.org)",
                ),
                IntermediateCa(
                    name="downstream-regional-intermediate",
                    trust_domain=down_td,
                    common_name="Downstream Regional Intermediate CA (downstream.example.org)",
                ),
            ],
        )
        .server(
            "spire-upstream-server",
            up_td,
            host="127.0.0.1",
            ports=ServerPorts(api=8081, health=8080, federation=8443),
            ca_ttl="48h",
            bundle_endpoint=_ENTERPRISE_BUNDLE_ENDPOINT,
            default_x509_svid_ttl="6h",
            default_jwt_svid_ttl="30m",
            upstream_authority=DiskUpstreamAuthority(ca="enterprise-root-intermediate"),
            node_attestors=(JoinTokenAttestor(), K8sPsatAttestor((up_cluster,))),
            kubernetes=ServerKubernetes(
                cluster=up_cluster,
                namespace="spire-upstream",
                node_ports=ServerNodePorts(api=31081, federation=31443),
                datastore=_mysql("spire-upstream-mysql", "spire-upstream"),
            ),
        )
        .server(
            "spire-downstream-server",
            down_td,
            host="127.0.0.2",
            ports=ServerPorts(api=8081, health=8080, federation=8443),
            ca_ttl="24h",
            bundle_endpoint=_ENTERPRISE_BUNDLE_ENDPOINT,
            default_x509_svid_ttl="4h",
            default_jwt_svid_ttl="15m",
            upstream_authority=DiskUpstreamAuthority(ca="downstream-regional-intermediate"),
            node_attestors=(JoinTokenAttestor(), K8sPsatAttestor((down_cluster,))),
            kubernetes=ServerKubernetes(
                cluster=down_cluster,
                namespace="spire-downstream",
                node_ports=ServerNodePorts(api=32081, federation=32443),
                datastore=_mysql("spire-downstream-mysql", "spire-downstream"),
                # Highly available (docs/high-availability.md): 2 replicas with memory keys,
                # safe under the disk UpstreamAuthority (a restarted replica's new CA is
                # signed by the same intermediate) and no volume claim to pin a replica to
                # a dead node. The upstream keeps 1: its cluster has a single node.
                replicas=2,
                key_manager="memory",
            ),
        )
        .federate("spire-upstream-server", "spire-downstream-server")
        .agent(
            "upstream-agent",
            "spire-upstream-server",
            workload_attestors=["unix", "k8s"],
            health_port=8180,
            telemetry_port=8280,
            kubernetes=AgentKubernetes(cluster=up_cluster, namespace="spire-upstream-agents"),
        )
    )
    # the fourth and fifth agents are inventory's and api-poller's: locally every process runs
    # as one uid, so a program that cannot pick its SVID (ghostunnel takes the first) needs
    # an agent of its own (on Kubernetes they share the first and third: kubernetes.agent)
    for i in (1, 2, 3, 4, 5):
        b.agent(
            f"downstream-agent-{i}",
            "spire-downstream-server",
            workload_attestors=["unix", "k8s"],
            health_port=8180 + i,
            telemetry_port=8280 + i,
            kubernetes=AgentKubernetes(cluster=down_cluster, namespace="spire-downstream-agents"),
        )
    b.workload(
        "upstream-client",
        f"spiffe://{up_td}/ns/upstream-workloads/sa/upstream-client",
        agent="upstream-agent",
        selectors=["k8s:ns:upstream-workloads", "k8s:sa:upstream-client"],
        federates_with=[down_td],
        # not in spire-upstream: whoever may run pods beside a server may mount its keys
        kubernetes=WorkloadKubernetes(
            namespace="upstream-workloads", service_account="upstream-client"
        ),
    )
    for i, name in enumerate(("enterprise-api", "data-processor", "security-gateway"), 1):
        node_port = 30080 if name == "security-gateway" else None
        b.workload(
            name,
            f"spiffe://{down_td}/ns/downstream-workloads/sa/{name}",
            agent=f"downstream-agent-{i}",
            selectors=["k8s:ns:downstream-workloads", f"k8s:sa:{name}"],
            dns_names=[f"{name}.downstream-workloads.svc"],
            federates_with=[up_td],
            run=_EXAMPLE_RUNS[name],
            kubernetes=WorkloadKubernetes(
                namespace="downstream-workloads",
                service_account=name,
                # data-processor only calls: no port, no Service, no readiness probe
                service_port=8443 if _EXAMPLE_RUNS[name].port else None,
                node_port=node_port,
                # the API's records and results outlive its pod
                storage="64Mi" if name == "enterprise-api" else None,
            ),
        )
    b.workload(
        "inventory",
        f"spiffe://{down_td}/ns/downstream-workloads/sa/inventory",
        agent="downstream-agent-4",
        selectors=["k8s:ns:downstream-workloads", "k8s:sa:inventory"],
        dns_names=["inventory.downstream-workloads.svc"],
        run=_INVENTORY_RUN,
        # on Kubernetes the k8s selectors tell its pod apart: enterprise-api's agent will do
        kubernetes=WorkloadKubernetes(
            namespace="downstream-workloads", service_account="inventory", service_port=8443,
            agent="downstream-agent-1", image_role="nginx",
        ),
        sidecars=[
            # nginx has no SPIFFE code: ghostunnel terminates mTLS and admits only these two
            Sidecar(
                "tls",
                "server",
                app_port=30446,
                allow_ids=(
                    f"spiffe://{down_td}/ns/downstream-workloads/sa/enterprise-api",
                    f"spiffe://{down_td}/ns/downstream-workloads/sa/security-gateway",
                ),
                status_port=30447,
            )
        ],
    )
    b.workload(
        "api-poller",
        f"spiffe://{down_td}/ns/downstream-workloads/sa/api-poller",
        agent="downstream-agent-5",
        selectors=["k8s:ns:downstream-workloads", "k8s:sa:api-poller"],
        # plain HTTP to 127.0.0.1; its client sidecar carries it to enterprise-api over mTLS
        run=LocalRun(module=f"{_EXAMPLES}.plain_poller",
                     args=("--url", "http://{client}/health", "--interval", "5")),
        kubernetes=WorkloadKubernetes(namespace="downstream-workloads",
                                      service_account="api-poller", agent="downstream-agent-3"),
        sidecars=[Sidecar("mtls", "client", listen_port=30450, target="enterprise-api",
                          status_port=30451)],
    )
    b.workload(
        "catalog",
        f"spiffe://{down_td}/ns/downstream-workloads/sa/catalog",
        # a Python helper picks its SVID by ID: it may share data-processor's agent
        agent="downstream-agent-2",
        selectors=["k8s:ns:downstream-workloads", "k8s:sa:catalog"],
        dns_names=["catalog.downstream-workloads.svc"],
        run=_CATALOG_RUN,
        kubernetes=WorkloadKubernetes(
            namespace="downstream-workloads", service_account="catalog", service_port=8443,
            image_role="nginx",
        ),
        sidecars=[Sidecar("svid", "files", signal="HUP", pid_file="nginx.pid",
                          status_port=30449)],
    )
    # Prometheus and Alertmanager on NodePorts 30090/30093; the gateway is the edge whose
    # 5xx ratio GatewayErrors watches
    b.monitoring(edge_workload="security-gateway")
    return b.build()


def nested() -> Topology:
    """Real SPIRE nesting: the child server's CA comes from the root server through the
    root-side agent's Workload API (UpstreamAuthority "spire"), all in one trust domain."""
    td = "nested.example.org"
    cluster = "nested-cluster"
    return (
        TopologyBuilder("nested")
        .trust_domain(td, "one trust domain, two tiers of SPIRE servers")
        .cluster(cluster, ["spire-root", "spire-child", "spire-agents", "apps"])
        .server(
            "spire-root-server",
            td,
            host="127.0.0.1",
            bundle_endpoint=None,
            ca_ttl="48h",
            node_attestors=(JoinTokenAttestor(), K8sPsatAttestor((cluster,))),
            kubernetes=ServerKubernetes(cluster=cluster, namespace="spire-root"),
        )
        .agent(
            "root-agent",
            "spire-root-server",
            workload_attestors=["unix", "k8s"],
            health_port=8180,
            telemetry_port=8280,
            kubernetes=AgentKubernetes(cluster=cluster, namespace="spire-agents"),
        )
        .server(
            "spire-child-server",
            td,
            host="127.0.0.2",
            bundle_endpoint=None,
            ca_ttl="24h",
            upstream_authority=SpireUpstreamAuthority(
                server="spire-root-server", agent="root-agent"
            ),
            node_attestors=(JoinTokenAttestor(), K8sPsatAttestor((cluster,))),
            # Both servers publish their bundle into spire-agents: one ConfigMap each.
            kubernetes=ServerKubernetes(
                cluster=cluster, namespace="spire-child", bundle_configmap="spire-child-bundle"
            ),
        )
        .agent(
            "child-agent",
            "spire-child-server",
            workload_attestors=["unix", "k8s"],
            health_port=8181,
            telemetry_port=8281,
            kubernetes=AgentKubernetes(
                cluster=cluster, namespace="spire-agents", service_account="spire-child-agent"
            ),
        )
        .workload(
            "spire-child-server",
            f"spiffe://{td}/spire-child-server",
            agent="root-agent",
            selectors=["k8s:ns:spire-child", "k8s:sa:spire-server"],
            local_selectors=["unix:uid:1000"],
            downstream=True,
        )
        .workload(
            "example-app",
            f"spiffe://{td}/ns/apps/sa/example-app",
            agent="child-agent",
            selectors=["k8s:ns:apps", "k8s:sa:example-app"],
            local_selectors=["unix:uid:1000"],
            run=_APP_RUN,
            kubernetes=WorkloadKubernetes(
                namespace="apps", service_account="example-app", service_port=8443
            ),
        )
        .build()
    )


def crd_free() -> Topology:
    """Registration through the SPIRE Server API and namespace-scoped RBAC only: no CRDs,
    no controller manager, no ClusterRoles. Hence join_token agents and the unix workload
    attestor even on Kubernetes (k8s_psat and the k8s attestor need cluster-scoped reads).

    The agent namespace works with Roles alone: the server's BundlePublisher gets a Role
    there bound to its ServiceAccount in ``spire``. Without a CSIDriver (cluster-scoped)
    the workload mounts the agent socket by hostPath, so ``apps`` must be privileged too."""
    cluster = "spire-cluster"
    return (
        TopologyBuilder("crd-free")
        .trust_domain("example.org", "single trust domain, no cluster-scoped RBAC")
        .cluster(cluster, ["spire", "spire-agents", "apps"])
        .kubernetes(registration="spire-api", rbac="namespace")
        .server(
            "spire-server",
            "example.org",
            bundle_endpoint=None,
            kubernetes=ServerKubernetes(
                cluster=cluster, namespace="spire", controller_manager=False
            ),
        )
        .agent(
            "spire-agent",
            "spire-server",
            workload_attestors=["unix"],
            health_port=8180,
            telemetry_port=8280,
            kubernetes=AgentKubernetes(
                cluster=cluster, namespace="spire-agents", node_attestor="join_token"
            ),
        )
        .workload(
            "example-app",
            "spiffe://example.org/example-app",
            agent="spire-agent",
            selectors=["unix:uid:1000"],
            run=_APP_RUN,
            kubernetes=WorkloadKubernetes(
                namespace="apps", service_account="example-app", service_port=8443
            ),
        )
        .build()
    )


def scale(params: ScaleParameters | None = None) -> Topology:
    """The topology ``params`` describe (defaults: 20 agents, 200 workloads, 5 running);
    see ``_scale`` for its shape. Running workloads are the API example admitting itself."""
    p = params or ScaleParameters()
    b = (
        TopologyBuilder("scale")
        .trust_domain(TRUST_DOMAIN, "generated for size: one server, many agents and entries")
        .server("spire-server", TRUST_DOMAIN, bundle_endpoint=None, ca_ttl="48h")
    )
    for i in range(p.agents):
        b.agent(
            f"agent-{i}",
            "spire-server",
            workload_attestors=["unix"],
            health_port=8180 + i,
            telemetry_port=None,
        )
    agents = [f"agent-{i}" for i in range(p.agents)]
    selectors = ("unix:uid:1000",)  # one tuple for all: validation checks it once per agent

    def workload(i: int) -> Workload:
        agent = agents[i % p.agents]
        name = f"workload-{i}" if i < p.workloads else f"entry-{i - p.workloads}"
        return Workload(
            name=name,
            spiffe_id=f"spiffe://{TRUST_DOMAIN}/{agent}/{name}",
            agent=agent,
            selectors=selectors,
            run=dataclasses.replace(_APP_RUN, port=FIRST_WORKLOAD_PORT + i)
            if i < p.running
            else None,
        )

    b.add_workloads(workload(i) for i in range(p.workloads + p.entries))
    return b.build()


_PRESETS: dict[str, Callable[[], Topology]] = {
    "basic": basic,
    "enterprise": enterprise,
    "nested": nested,
    "crd-free": crd_free,
}
# The presets for every target. ``scale`` is apart: it is local-only and takes parameters.
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def is_preset_spelling(value: str) -> bool:
    """Whether ``value`` names a preset, with parameters (``scale:agents=20``) or without."""
    return value.partition(":")[0] in (*_PRESETS, "scale")


def preset(name: str) -> Topology:
    """A validated preset topology by name (see :data:`PRESET_NAMES`); only ``scale`` takes
    parameters, as ``scale:agents=20,workloads=200,running=5,entries=50000``.

    Raises KeyError for an unknown name and ValueError naming a bad parameter."""
    base, sep, spec = name.partition(":")
    if base == "scale":
        return scale(parse_scale(spec))
    if sep:
        raise ValueError(f"preset {base!r} takes no parameters (only scale does); got {name!r}")
    try:
        factory = _PRESETS[name]
    except KeyError:
        raise KeyError(
            f"unknown preset {name!r}; choose one of: {', '.join(PRESET_NAMES)}, "
            "or scale[:agents=N,workloads=N,running=N,entries=N] (local target)"
        ) from None
    return factory()
