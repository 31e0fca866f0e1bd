"""The declarative SPIRE topology: model, builder, presets, validation and YAML.

Typical use::

    from spire_fabric.topology import TopologyBuilder, preset, load_topology, dump_topology

    t = (
        TopologyBuilder("demo")
        .trust_domain("example.org")
        .server("spire-server", "example.org", default_x509_svid_ttl="1h")
        .agent("agent-1", "spire-server")
        .workload("app", "spiffe://example.org/app", agent="agent-1",
                  selectors=["unix:uid:1000"])
        .build()
    )
"""

from spire_fabric.topology._builder import TopologyBuilder
from spire_fabric.topology._durations import format_duration, parse_duration
from spire_fabric.topology._errors import Problem, TopologyError
from spire_fabric.topology._kubernetes_only import (
    MONITORING_NAMESPACE,
    KubernetesView,
    kubernetes_view,
    local_only_note,
    local_only_notes,
    monitoring_cluster,
    sidecars_on_kubernetes,
)
from spire_fabric.topology._model import (
    CA_KEY_TYPES,
    IMAGE_ROLES,
    TARGETS,
    WORKLOAD_ATTESTORS,
    Agent,
    AgentKubernetes,
    BundleEndpoint,
    CaHierarchy,
    Cluster,
    Datastore,
    DiskUpstreamAuthority,
    Federation,
    HealthProbe,
    Images,
    IntermediateCa,
    JoinTokenAttestor,
    K8sPsatAttestor,
    KubernetesOptions,
    LocalRun,
    Monitoring,
    MySqlDatastore,
    MySqlInstance,
    NodeAttestor,
    PostgresDatastore,
    RootCa,
    Server,
    ServerKubernetes,
    ServerNodePorts,
    ServerPorts,
    Sidecar,
    SidecarMode,
    SpireUpstreamAuthority,
    SqliteDatastore,
    Target,
    Topology,
    TrustDomainSpec,
    UpstreamAuthority,
    Workload,
    WorkloadKubernetes,
    unknown_image_role,
)
from spire_fabric.topology._presets import PRESET_NAMES, is_preset_spelling, preset, scale
from spire_fabric.topology._published import PublishedPort, published_ports, workload_node_port
from spire_fabric.topology._resolve import (
    agent_key_manager,
    agent_namespaces,
    agent_node_attestor,
    agent_workload_attestors,
    api_node_port,
    bundle_endpoint_url,
    bundle_publisher_namespaces,
    config_federations,
    controller_manager_enabled,
    effective_datastore,
    endpoint_spiffe_id,
    jwt_issuer,
    posture_warnings,
    psat_allow_list,
    server_address_for,
    server_key_manager,
    server_node_attestors,
    server_replicas,
    service_host,
    shared_datastore,
    upstream_address_for,
    workload_callers,
    workload_selectors,
    workload_uses_files,
)
from spire_fabric.topology._scale import ScaleParameters, parse_scale
from spire_fabric.topology._validate import validate_localized, validate_topology
from spire_fabric.topology._workload_run import Placeholder, PlaceholderError, placeholders
from spire_fabric.topology._workload_run import expand as expand_placeholders
from spire_fabric.topology._yaml import dump_topology, load_topology

__all__ = [
    "CA_KEY_TYPES",
    "IMAGE_ROLES",
    "MONITORING_NAMESPACE",
    "PRESET_NAMES",
    "TARGETS",
    "WORKLOAD_ATTESTORS",
    "Agent",
    "AgentKubernetes",
    "BundleEndpoint",
    "CaHierarchy",
    "Cluster",
    "Datastore",
    "DiskUpstreamAuthority",
    "Federation",
    "HealthProbe",
    "Images",
    "IntermediateCa",
    "JoinTokenAttestor",
    "K8sPsatAttestor",
    "KubernetesOptions",
    "KubernetesView",
    "LocalRun",
    "Monitoring",
    "MySqlDatastore",
    "MySqlInstance",
    "NodeAttestor",
    "Placeholder",
    "PlaceholderError",
    "PostgresDatastore",
    "Problem",
    "PublishedPort",
    "RootCa",
    "ScaleParameters",
    "Server",
    "ServerKubernetes",
    "ServerNodePorts",
    "ServerPorts",
    "Sidecar",
    "SidecarMode",
    "SpireUpstreamAuthority",
    "SqliteDatastore",
    "Target",
    "Topology",
    "TopologyBuilder",
    "TopologyError",
    "TrustDomainSpec",
    "UpstreamAuthority",
    "Workload",
    "WorkloadKubernetes",
    "agent_key_manager",
    "agent_namespaces",
    "agent_node_attestor",
    "agent_workload_attestors",
    "api_node_port",
    "bundle_endpoint_url",
    "bundle_publisher_namespaces",
    "config_federations",
    "controller_manager_enabled",
    "dump_topology",
    "effective_datastore",
    "endpoint_spiffe_id",
    "expand_placeholders",
    "format_duration",
    "is_preset_spelling",
    "jwt_issuer",
    "kubernetes_view",
    "load_topology",
    "local_only_note",
    "local_only_notes",
    "monitoring_cluster",
    "parse_duration",
    "parse_scale",
    "placeholders",
    "posture_warnings",
    "preset",
    "psat_allow_list",
    "published_ports",
    "scale",
    "server_address_for",
    "server_key_manager",
    "server_node_attestors",
    "server_replicas",
    "service_host",
    "shared_datastore",
    "sidecars_on_kubernetes",
    "unknown_image_role",
    "upstream_address_for",
    "validate_localized",
    "validate_topology",
    "workload_callers",
    "workload_node_port",
    "workload_selectors",
    "workload_uses_files",
]


def __getattr__(name: str) -> object:
    # `FederationRelationship` named two classes (this one and the Server API's); the
    # topology's is `Federation` now. The old name works for one more release.
    if name == "FederationRelationship":
        import warnings

        warnings.warn(
            "spire_fabric.topology.FederationRelationship is now spire_fabric.topology."
            "Federation (spire_fabric.server.FederationRelationship is SPIRE's API object)",
            DeprecationWarning,
            stacklevel=2,
        )
        return Federation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
