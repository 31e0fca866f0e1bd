"""The declarative topology: values only, no behaviour beyond small derived properties.

One model serves two targets. Fields at the top level of each element apply everywhere;
fields under ``kubernetes`` apply only when the topology is made real on Kubernetes (the
local target runs every server and agent as a host process and ignores them). Where a value
differs per target (the datastore, the agent's node attestor) the Kubernetes variant lives
under ``kubernetes`` and :mod:`spire_fabric.topology._resolve` picks the effective one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

from spire_fabric._version import __version__
from spire_fabric.identity import SpiffeId, TrustDomain, as_trust_domain

Target = Literal["local", "kubernetes"]
TARGETS: tuple[Target, ...] = ("local", "kubernetes")

BundleEndpointProfile = Literal["https_spiffe", "https_web"]
KeyManagerKind = Literal["disk", "memory"]
AgentNodeAttestor = Literal["join_token", "k8s_psat"]
KubeletVerification = Literal["service-account-ca", "host-ca", "skip"]
KubeletAccess = Literal["nodes/pods", "nodes/proxy"]
Registration = Literal["controller-manager", "spire-api"]
RbacScope = Literal["cluster", "namespace"]
WorkloadSocket = Literal["csi", "host-path"]

CA_KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-4096")
WORKLOAD_ATTESTORS = ("unix", "k8s")


# --- datastores -------------------------------------------------------------------------


@dataclass(frozen=True)
class SqliteDatastore:
    """Embedded SQLite. ``path`` None means ``<data_dir>/datastore.sqlite3`` of the target."""

    path: str | None = None


@dataclass(frozen=True)
class MySqlInstance:
    """A MySQL that the Kubernetes target deploys next to the server (the DSN points at it).

    The password never appears in the model: the DSN carries ``${SPIRE_DB_PASSWORD}`` and
    the server runs with ``-expandEnv`` with that variable taken from ``password_secret``
    (SPIRE reads a DSN from nowhere but its config and environment). MySQL reads the
    passwords as files of that Secret and serves TLS only, with a certificate for its Service
    name from the installer's datastore CA, which the server verifies (``root_ca_path``).
    """

    service: str
    image: str = "mysql:8.4.6"
    database: str = "spire"
    user: str = "spire"
    password_secret: str = "spire-mysql"
    storage: str = "1Gi"


@dataclass(frozen=True)
class MySqlDatastore:
    """MySQL through a go-sql-driver DSN; SPIRE requires ``parseTime=true`` in it."""

    dsn: str
    instance: MySqlInstance | None = None


@dataclass(frozen=True)
class PostgresDatastore:
    """PostgreSQL through a libpq connection string (``dbname=spire host=... ``)."""

    dsn: str


Datastore = SqliteDatastore | MySqlDatastore | PostgresDatastore


# --- upstream authorities ---------------------------------------------------------------


@dataclass(frozen=True)
class DiskUpstreamAuthority:
    """The server's CA is signed by a CA we hold on disk: ``ca`` names an intermediate of
    the topology's CA hierarchy. The file locations come from the render target, unless
    overridden here for a CA the user brings."""

    ca: str
    cert_file: str | None = None
    key_file: str | None = None
    bundle_file: str | None = None


@dataclass(frozen=True)
class SpireUpstreamAuthority:
    """Nested SPIRE: the server gets its CA from ``server`` (same trust domain only),
    through the Workload API of ``agent`` (an agent of that upstream server running next
    to this server)."""

    server: str
    agent: str


UpstreamAuthority = DiskUpstreamAuthority | SpireUpstreamAuthority


# --- node attestors ---------------------------------------------------------------------


@dataclass(frozen=True)
class JoinTokenAttestor:
    """Server side of join-token attestation (tokens are minted through the API)."""


@dataclass(frozen=True)
class K8sPsatAttestor:
    """Server side of projected-service-account-token attestation for these clusters.
    The service-account allow list of each cluster is derived from the agents that run
    there, so it cannot drift from them."""

    clusters: tuple[str, ...]


NodeAttestor = JoinTokenAttestor | K8sPsatAttestor


# --- servers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerPorts:
    """Ports inside the server's network namespace (a pod on Kubernetes, ``host`` locally)."""

    api: int = 8081
    health: int = 8080
    federation: int = 8443
    # SPIRE's Prometheus telemetry listener (``telemetry { Prometheus { ... } }``); None
    # renders no telemetry block. Locally a server with NodePorts gets API - 2.
    telemetry: int | None = 9988


@dataclass(frozen=True)
class ServerNodePorts:
    """NodePorts that expose the server outside its cluster (agents and federated servers
    in other clusters reach it through these)."""

    api: int | None = None
    federation: int | None = None


@dataclass(frozen=True)
class BundleEndpoint:
    """The server's federation bundle endpoint. ``https_web`` serves with a certificate
    from files of the render target; ``https_spiffe`` with the server's own SVID."""

    profile: BundleEndpointProfile = "https_spiffe"
    refresh_hint: timedelta | None = None


@dataclass(frozen=True)
class ServerKubernetes:
    """Where the server runs on the Kubernetes target, and what differs there."""

    cluster: str
    namespace: str
    service_account: str = "spire-server"
    node_ports: ServerNodePorts = field(default_factory=ServerNodePorts)
    datastore: Datastore | None = None
    controller_manager: bool = True
    bundle_configmap: str = "spire-bundle"
    # Per-target overrides of the server's own ``replicas`` and ``key_manager`` (None: the
    # server's). The enterprise preset runs its downstream server with 2 replicas here
    # only: the local target refuses more than one (see ``server_replicas``).
    replicas: int | None = None
    key_manager: KeyManagerKind | None = None


def _typed(obj: object, field: str, path: str) -> None:
    """Store ``field`` as a TrustDomain (a str is read once, here; see _trust_domains)."""
    from spire_fabric.topology._trust_domains import topology_trust_domain

    object.__setattr__(obj, field, topology_trust_domain(getattr(obj, field), path))


@dataclass(frozen=True)
class Server:
    """One SPIRE server: its trust domain, where it listens, its TTLs, datastore, upstream
    authority and bundle endpoint, and how it runs on Kubernetes."""

    name: str
    trust_domain: TrustDomain
    host: str = "127.0.0.1"
    ports: ServerPorts = field(default_factory=ServerPorts)
    bundle_endpoint: BundleEndpoint | None = field(default_factory=BundleEndpoint)
    datastore: Datastore = field(default_factory=SqliteDatastore)
    key_manager: KeyManagerKind = "disk"
    # More than one replica is a highly available server: every replica runs against the
    # same SQL datastore (MySQL or PostgreSQL; validation refuses SQLite) with its own CA
    # keys (servers never share keys, spiffe/spire#3582). Only the Kubernetes target runs
    # replicas; see docs/high-availability.md.
    replicas: int = 1
    ca_key_type: str = "ec-p256"
    ca_ttl: timedelta = timedelta(hours=24)
    default_x509_svid_ttl: timedelta = timedelta(hours=1)
    default_jwt_svid_ttl: timedelta = timedelta(minutes=5)
    upstream_authority: UpstreamAuthority | None = None
    node_attestors: tuple[NodeAttestor, ...] = (JoinTokenAttestor(),)
    log_level: str = "INFO"
    # Operational hardening, on by default on both targets: every API call is logged with
    # its caller (audit_log_enabled); JWT-SVIDs name their issuer (None: https://<trust
    # domain>, see topology.jwt_issuer); attested nodes whose SVID expired this long ago
    # are deleted hourly (None keeps them forever; SPIRE never prunes join-token nodes,
    # which cannot re-attest, nor banned ones).
    audit_log_enabled: bool = True
    jwt_issuer: str | None = None
    prune_attested_nodes_expired_for: timedelta | None = timedelta(hours=24)
    kubernetes: ServerKubernetes | None = None

    def __post_init__(self) -> None:
        _typed(self, "trust_domain", f"servers[{self.name}].trust_domain")


# --- agents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentKubernetes:
    """Where the agent runs on the Kubernetes target (a DaemonSet) and how it attests.

    ``namespace`` must hold agents only: it is the one namespace labelled Pod Security
    "privileged" (the agent and its SPIFFE CSI driver need hostPID and hostPath), so a
    server or workload placed there would get host access it does not need."""

    cluster: str
    namespace: str
    service_account: str = "spire-agent"
    node_attestor: AgentNodeAttestor = "k8s_psat"
    # How the k8s workload attestor checks the kubelet's serving certificate before it
    # sends its token and believes the pod list: against the service-account ca.crt
    # (SPIRE's default, the cluster CA), against a CA file on the node
    # (``kubelet_ca_host_path``, for kubelets whose certificate another CA signs), or not
    # at all ("skip": an explicit opt-in that `deploy plan` and `verify` warn about).
    kubelet_verification: KubeletVerification = "service-account-ca"
    kubelet_ca_host_path: str | None = None
    # What the agent may ask of the kubelet: ``nodes/pods`` (the /pods endpoint only,
    # Kubernetes >= 1.33, KubeletFineGrainedAuthz) or ``nodes/proxy`` (every kubelet
    # endpoint, exec included) for older kubelets, which know nothing finer.
    kubelet_access: KubeletAccess = "nodes/pods"


@dataclass(frozen=True)
class Agent:
    """An agent attesting to ``server``. Locally it always attests with a join token (there
    is no Kubernetes to vouch for it); on Kubernetes with ``kubernetes.node_attestor``."""

    name: str
    server: str
    workload_attestors: tuple[str, ...] = ("unix",)
    host: str = "127.0.0.1"
    health_port: int | None = None
    # SPIRE's Prometheus telemetry listener of this agent; None renders no telemetry block.
    telemetry_port: int | None = None
    socket_path: str | None = None
    admin_socket_path: str | None = None
    admin_socket: bool = True
    log_level: str = "INFO"
    kubernetes: AgentKubernetes | None = None


# --- workloads --------------------------------------------------------------------------


ImageRole = Literal["workload", "nginx"]


@dataclass(frozen=True)
class WorkloadKubernetes:
    """The workload's pod. ``command`` None means ``python -m <run.module> <run.args>`` (the
    local description, with placeholders resolved for the cluster); ``image`` None means the
    topology's ``images.workload``."""

    namespace: str
    service_account: str
    service_port: int | None = None
    node_port: int | None = None
    image: str | None = None
    command: tuple[str, ...] = ()
    # A volume claim of this size (a Kubernetes quantity, e.g. "64Mi") becomes the pod's
    # working directory, where a workload keeps its files (the API's SQLite store): they
    # survive the pod's replacement. None: an emptyDir, kept across container restarts only.
    storage: str | None = None
    # The agent that attests the pod on Kubernetes, when not ``agent``: an agent of the same
    # server in a Kubernetes cluster. Locally every process runs as one uid, so a program that
    # cannot pick its SVID (ghostunnel takes the first the agent serves) needs an agent of its
    # own; on Kubernetes the agent tells pods apart by their k8s selectors (namespace, service
    # account), so such a workload can share a node's agent, and needs no node of its own
    # (one agent per node and server: `agent_node_selector`).
    agent: str | None = None
    # Which of the topology's ``images`` the pod runs when ``image`` is None (None: the
    # ``workload`` image); "nginx" for a workload that starts nginx (the project image with
    # Debian's nginx in it).
    image_role: ImageRole | None = None


HealthScheme = Literal["mtls", "http"]


@dataclass(frozen=True)
class HealthProbe:
    """How `verify` and `status` see that a workload serves: a GET of ``path``.

    ``mtls``: over mutual TLS, the server must authenticate as the workload's SPIFFE ID and
    the client presents the SVID of ``caller`` (a workload of the topology; None means the
    workload's own SVID), so the probe proves identity and authorization, not just a socket.
    ``expect`` holds ``key=value`` pairs that the JSON answer must contain (placeholders as
    in :class:`LocalRun` args), so a probe can prove what the service did, not only that it
    answered.
    """

    path: str = "/health"
    scheme: HealthScheme = "mtls"
    caller: str | None = None
    expect: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalRun:
    """How the local target runs the workload as a process next to its agent.

    Exactly one of ``module`` (``python -m module``, with the interpreter running spire_fabric)
    or ``command`` (an argv). ``args`` and ``env`` ("NAME=value") may hold placeholders that
    each target resolves: ``{port}`` and ``{listen}`` (where this workload listens),
    ``{spiffe_id}``, and ``{url:NAME}``, ``{port:NAME}``, ``{spiffe_id:NAME}`` of another
    workload. ``port`` is the local listen port (moved by ``--port-base`` like every other
    local port). The process gets ``SPIFFE_ENDPOINT_SOCKET`` of its agent and ``SPIFFE_ID``
    (the ID to pick when the agent issues it several).
    """

    module: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    port: int | None = None
    health: HealthProbe | None = None
    # Where the workload serves Prometheus' /metrics (plain HTTP), if it does: the
    # ``{metrics_listen}`` placeholder; locally on loopback, moved by --port-base like
    # ``port``. The topology's `monitoring` scrapes it.
    metrics_port: int | None = None


SidecarMode = Literal["server", "client", "files"]


@dataclass(frozen=True)
class Sidecar:
    """A process beside the workload's app that gives it SPIFFE identity without SPIFFE code
    (a container in the same pod on Kubernetes, a supervised process locally).

    ``server`` (ghostunnel): terminates SPIFFE mTLS on the workload's port (``run.port``
    locally, ``kubernetes.service_port`` on Kubernetes) and forwards each admitted connection
    to the app's plain ``app_port`` on 127.0.0.1. Callers are admitted only by
    ``allow_ids`` (exact SPIFFE IDs) or ``allow_trust_domains`` (any ID of that trust
    domain): nothing is allowed by default.

    ``client`` (ghostunnel): a plain port ``listen_port`` on 127.0.0.1 for the app, dialling
    workload ``target`` over SPIFFE mTLS and accepting only ``target``'s SPIFFE ID (plus
    ``allow_ids`` / ``allow_trust_domains`` if given).

    ``files`` (``python -m spire_fabric.helper``): the workload's SVID, key and bundle as
    files in the workload's SVID directory (``{svid}`` in its run description: a
    directory of its own locally, an emptyDir shared by the pod's containers on
    Kubernetes), and a JWT-SVID per ``jwt_audiences`` entry; after each rotation
    ``signal`` goes to the pid in ``pid_file`` (a path inside the SVID directory, which
    the app may write).

    ``status_port``: the sidecar's health on 127.0.0.1 (ghostunnel's ``/_status``, the
    helper's ``/ready``), which ``status`` and the pod's probes read.
    """

    name: str
    mode: SidecarMode
    app_port: int | None = None
    listen_port: int | None = None
    target: str | None = None
    allow_ids: tuple[str, ...] = ()
    allow_trust_domains: tuple[TrustDomain, ...] = ()
    signal: str | None = None
    pid_file: str | None = None
    jwt_audiences: tuple[str, ...] = ()
    status_port: int | None = None

    def __post_init__(self) -> None:
        from spire_fabric.topology._trust_domains import topology_trust_domain

        typed = tuple(
            topology_trust_domain(td, f"sidecars[{self.name}].allow_trust_domains[{i}]")
            for i, td in enumerate(self.allow_trust_domains)
        )
        object.__setattr__(self, "allow_trust_domains", typed)


# Where a Workload keeps its parsed SPIFFE ID, in its __dict__ beside the fields.
_PARSED_ID = "_parsed_spiffe_id"


@dataclass(frozen=True)
class Workload:
    """A registration entry and, when ``run`` is set, the process (locally) or pod
    (Kubernetes) that wears it.

    ``selectors`` are "type:value" strings such as ``k8s:ns:payments`` or ``unix:uid:1000``;
    ``local_selectors``, when set, replace them on the local target where there is no
    Kubernetes to produce ``k8s:*`` selectors. ``sidecars`` run beside the app and wear the
    workload's identity for it (see :class:`Sidecar`).
    """

    name: str
    spiffe_id: str
    agent: str
    selectors: tuple[str, ...]
    local_selectors: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    federates_with: tuple[TrustDomain, ...] = ()
    x509_svid_ttl: timedelta | None = None
    jwt_svid_ttl: timedelta | None = None
    hint: str | None = None
    downstream: bool = False
    run: LocalRun | None = None
    kubernetes: WorkloadKubernetes | None = None
    sidecars: tuple[Sidecar, ...] = ()

    def __post_init__(self) -> None:
        if self.federates_with == ():  # most workloads: nothing to type (50k in a scale plan)
            return
        from spire_fabric.topology._trust_domains import topology_trust_domain

        typed = tuple(
            topology_trust_domain(td, f"workloads[{self.name}].federates_with[{i}]")
            for i, td in enumerate(self.federates_with)
        )
        object.__setattr__(self, "federates_with", typed)

    @property
    def parsed_spiffe_id(self) -> SpiffeId:
        """``spiffe_id`` parsed (raises SpiffeIdError naming the broken rule).

        Why kept: validation parses it, and so does every registration built from the
        workload; with 50k workloads the second parse was 0.1 s of a `plan`. The value
        lives in the instance's ``__dict__`` beside the fields (not a field: equality,
        ``repr`` and ``dataclasses.replace`` ignore it; a replaced workload parses anew).
        Not ``functools.cached_property``: on Python 3.11 it takes a lock on every first
        read, a third of the parse's cost.
        """
        kept: SpiffeId | None = self.__dict__.get(_PARSED_ID)
        if kept is None:
            kept = self.__dict__[_PARSED_ID] = SpiffeId.parse(self.spiffe_id)
        return kept


# --- federation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Federation:
    """``server`` fetches the bundle of ``trust_domain`` from its bundle endpoint.

    ``endpoint_url`` None means: derive it per target from the server that owns that trust
    domain. ``endpoint_spiffe_id`` None (https_spiffe) means SPIRE's own server ID,
    ``spiffe://<trust_domain>/spire/server``.
    """

    server: str
    trust_domain: TrustDomain
    profile: BundleEndpointProfile = "https_spiffe"
    endpoint_url: str | None = None
    endpoint_spiffe_id: str | None = None

    def __post_init__(self) -> None:
        _typed(self, "trust_domain", f"federations[{self.server}->{self.trust_domain}]")


# --- monitoring -------------------------------------------------------------------------


@dataclass(frozen=True)
class Monitoring:
    """Prometheus and Alertmanager watching every server, agent and workload that serves
    metrics, with the alert rules `render` writes (docs/monitoring.md).

    The ports are NodePort numbers: the local target binds them on loopback, moved by
    ``--port-base`` like every other local port. ``edge_workload`` is the workload whose 5xx
    ratio ``GatewayErrors`` watches (the security gateway in the enterprise preset).
    Short intervals make a fault visible within seconds; on loopback a scrape of every
    component costs little (the measured cost is in docs/monitoring.md).
    """

    prometheus_port: int = 30090
    alertmanager_port: int = 30093
    scrape_interval: timedelta = timedelta(seconds=5)
    evaluation_interval: timedelta = timedelta(seconds=5)
    retention: timedelta = timedelta(hours=24)
    edge_workload: str | None = None


# --- CA hierarchy -----------------------------------------------------------------------


@dataclass(frozen=True)
class RootCa:
    """The offline Enterprise Root CA that signs each trust domain's intermediate."""

    name: str = "enterprise-root-ca"
    common_name: str = "Enterprise Root CA"
    key_type: str = "ec-p256"
    ttl: timedelta = timedelta(hours=87600)


@dataclass(frozen=True)
class IntermediateCa:
    """An intermediate the root issues for one trust domain. It carries a URI name
    constraint permitting only that trust domain, so a server holding it cannot mint
    SVIDs for a federated trust domain even though both bundles contain the root.
    ``path_length`` 1 leaves room for SPIRE's own signing CA below it."""

    name: str
    trust_domain: TrustDomain
    common_name: str
    key_type: str = "ec-p256"
    ttl: timedelta = timedelta(hours=8760)
    path_length: int = 1

    def __post_init__(self) -> None:
        _typed(self, "trust_domain", f"ca.intermediates[{self.name}].trust_domain")

    @property
    def permitted_uri_domain(self) -> str:
        """The URI name constraint this intermediate carries: its trust domain's name."""
        return self.trust_domain.name


@dataclass(frozen=True)
class CaHierarchy:
    """The Enterprise Root CA and the name-constrained intermediates it issues, one per
    trust domain (see DESIGN.md: the constraints keep the federation boundary real)."""

    root: RootCa = field(default_factory=RootCa)
    intermediates: tuple[IntermediateCa, ...] = ()


# --- kubernetes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A Kubernetes cluster. ``node_address`` is how other clusters reach its NodePorts
    (kind names its node container ``<cluster>-control-plane``)."""

    name: str
    namespaces: tuple[str, ...] = ()
    node_address: str | None = None

    @property
    def effective_node_address(self) -> str:
        """The node address the cluster's NodePorts are reached on."""
        return self.node_address or f"{self.name}-control-plane"


@dataclass(frozen=True)
class Images:
    """Container images of the Kubernetes target, pinned to full versions.

    ``workload`` is the project's own image (spire_fabric and its examples), which
    `python -m spire_fabric.deploy image build` makes for this version: a plain Python
    image has no spire_fabric, so the example workloads could not start in it."""

    server: str = "ghcr.io/spiffe/spire-server:1.13.3"
    agent: str = "ghcr.io/spiffe/spire-agent:1.13.3"
    controller_manager: str = "ghcr.io/spiffe/spire-controller-manager:0.6.3"
    workload: str = f"spire-fabric:{__version__}"
    # server/client sidecars: ghostunnel built from its module (runtime.ghostunnel)
    ghostunnel: str = "spire-fabric-ghostunnel:1.8.4"
    # ``workload`` with Debian's nginx in it (`deploy image build --base` an image that has
    # it), for the workloads whose ``kubernetes.image_role`` is "nginx" (inventory, catalog)
    nginx: str = f"spire-fabric-nginx:{__version__}"
    # spiffe-csi-driver 0.2.8 (2025-08) is the release of SPIRE 1.13's time and already has
    # -plugin-name (since 0.2.2); the registrar version is the one spiffe-csi's examples use.
    csi_driver: str = "ghcr.io/spiffe/spiffe-csi-driver:0.2.8"
    csi_registrar: str = "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.10.0"
    # The agent's init container: it only chowns the agent's directories, and SPIRE's own
    # images are FROM scratch (no chown in them).
    agent_init: str = "docker.io/library/busybox:1.37.0"
    # `monitoring:`: the releases Debian bookworm packages (the test clusters' images are
    # built from those packages); the pods pass arguments only, so either entrypoint works.
    prometheus: str = "quay.io/prometheus/prometheus:v2.42.0"
    alertmanager: str = "quay.io/prometheus/alertmanager:v0.25.0"


# ``--image ROLE=REF``: every field of Images, and the MySQL instance's image. Here, beside
# Images, so the CLI can refuse a misspelt role before it contacts any cluster.
IMAGE_ROLES = (*(f.name for f in dataclasses.fields(Images)), "mysql")


def unknown_image_role(roles: Iterable[str]) -> str | None:
    """The message refusing the first role of ``roles`` that is not an image role."""
    unknown = sorted(set(roles) - set(IMAGE_ROLES))
    if not unknown:
        return None
    return f"--image {unknown[0]}=…: unknown role (one of {', '.join(IMAGE_ROLES)})"


@dataclass(frozen=True)
class KubernetesOptions:
    """Target-wide choices the Kubernetes renderer reads.

    ``registration`` "spire-api" means entries are created through the SPIRE Server API
    (no CRDs, no controller manager); ``rbac`` "namespace" means only Roles/RoleBindings.
    """

    registration: Registration = "controller-manager"
    rbac: RbacScope = "cluster"
    images: Images = field(default_factory=Images)
    # How pods reach their agent's Workload API socket: the SPIFFE CSI driver (keeps
    # workload namespaces Pod Security "restricted"), or a hostPath mount where no CSI
    # driver can be installed (the workload's namespace must then be "privileged").
    workload_socket: WorkloadSocket = "csi"


# --- the whole ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustDomainSpec:
    """A trust domain the topology declares, with a note on its role."""

    name: TrustDomain
    description: str = ""

    def __post_init__(self) -> None:
        _typed(self, "name", f"trust_domains[{self.name}]")


@dataclass(frozen=True)
class Topology:
    """A whole deployment described as data: trust domains, servers, agents, workloads,
    federation, CA hierarchy and Kubernetes options. Built by `TopologyBuilder` or a
    preset, checked by `validate_topology`, rendered and run by the layers above."""

    name: str
    trust_domains: tuple[TrustDomainSpec, ...] = ()
    servers: tuple[Server, ...] = ()
    agents: tuple[Agent, ...] = ()
    workloads: tuple[Workload, ...] = ()
    federations: tuple[Federation, ...] = ()
    ca: CaHierarchy | None = None
    clusters: tuple[Cluster, ...] = ()
    kubernetes: KubernetesOptions = field(default_factory=KubernetesOptions)
    monitoring: Monitoring | None = None

    # Deprecated spelling of ``TopologyBuilder(name)``. The builder sits above the model (its
    # build() validates, and validation reads the model), so the model cannot name it, not
    # even for the type checker; _builder binds this on import (always, as the package
    # imports it) and it returns Any. TopologyBuilder(name) keeps the chain typed.
    builder: ClassVar[Callable[[str], Any]]

    def server(self, name: str) -> Server:
        """The server called ``name`` (KeyError naming it if there is none)."""
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(f"topology {self.name!r} has no server {name!r}")

    def agent(self, name: str) -> Agent:
        """The agent called ``name`` (KeyError naming it if there is none)."""
        for a in self.agents:
            if a.name == name:
                return a
        raise KeyError(f"topology {self.name!r} has no agent {name!r}")

    def workload(self, name: str) -> Workload:
        """The workload called ``name`` (KeyError naming it if there is none)."""
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(f"topology {self.name!r} has no workload {name!r}")

    def cluster(self, name: str) -> Cluster:
        """The cluster called ``name`` (KeyError naming it if there is none)."""
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(f"topology {self.name!r} has no cluster {name!r}")

    def servers_of(self, trust_domain: TrustDomain | str) -> tuple[Server, ...]:
        """The servers of ``trust_domain``."""
        td = as_trust_domain(trust_domain)
        return tuple(s for s in self.servers if s.trust_domain == td)

    def agents_of(self, server: str) -> tuple[Agent, ...]:
        """The agents attested to ``server``."""
        return tuple(a for a in self.agents if a.server == server)

    def federations_of(self, server: str) -> tuple[Federation, ...]:
        """The federation relationships ``server`` holds."""
        return tuple(f for f in self.federations if f.server == server)

    def __repr__(self) -> str:
        return (
            f"Topology({self.name!r}: {len(self.trust_domains)} trust domains, "
            f"{len(self.servers)} servers, {len(self.agents)} agents, "
            f"{len(self.workloads)} workloads, {len(self.federations)} federations)"
        )

    def _repr_html_(self) -> str | None:
        # The diagram is drawn server-side as SVG (shows offline and on a code host), with
        # the Mermaid source in a collapsible block, by spire_fabric.render, a layer above
        # this one; _html.topology_view says how the drawer gets here without an import.
        from spire_fabric import _html

        return _html.topology_view(self)
