"""What a running topology offers, wherever it runs: the seam between targets and checks.

Why an interface: `verify`, `status`, the CLI, notebooks and the dashboard need the same
things of every target (a client for each server's API, each agent's Workload API, where
each workload listens, lifecycle) and must not care whether SPIRE runs as processes on
this machine or as pods in two clusters. A target implements :class:`Deployment`; the
checks are written once against it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from cryptography import x509

from spire_fabric.entries import EntryPlan
from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid, SpiffeId
from spire_fabric.runtime.ca_hierarchy import SigningCa
from spire_fabric.server import Entry, ServerInfo
from spire_fabric.topology import PublishedPort, Target, Topology

if TYPE_CHECKING:
    # annotations only: the clients bring gRPC, which a local `plan` does not need
    from spire_fabric.server import SpireServerClient
    from spire_fabric.workload import X509Context

__all__ = [
    "Change",
    "ChangeAction",
    "ComponentHealth",
    "Deployment",
    "DeploymentPlan",
    "StepReporter",
    "WorkloadAddress",
    "WorkloadViews",
    "no_report",
]

StepReporter = Callable[[str], AbstractContextManager[object]]
"""Called with a step's name around each step of `up`, so a CLI can show progress."""


@contextlib.contextmanager
def _silent(_: str) -> Iterator[None]:
    yield


no_report: StepReporter = _silent

ChangeAction = Literal["create", "update", "delete", "start", "restart", "stop", "set"]


@dataclass(frozen=True)
class Change:
    """One thing `up` would do. ``kind`` is what it acts on (``process``, ``config``,
    ``entry``, ``federation``, ``federated-bundle``, ``join-token``, ``ca``); ``fields``
    are the changed fields of an update, so a plan shows *what* changes, not only *that*."""

    action: ChangeAction
    kind: str
    name: str
    detail: str = ""
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for `plan`: action, kind, name and the changed fields."""
        text = f"{self.action} {self.kind} {self.name}"
        if self.fields:
            text += f" ({', '.join(self.fields)})"
        return text + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class DeploymentPlan:
    """What `up` would do, read from the recorded state and the live servers, like
    ``terraform plan``. Empty means "no changes"."""

    topology: str
    target: Target
    changes: tuple[Change, ...] = ()
    notes: tuple[str, ...] = ()  # what could not be read (a server that is down)
    unchanged: int = 0  # objects found as they should be (targets that count them)
    # every port the deployment opens beyond where its owner runs, and who may call it
    # (topology.published_ports); changes or not, an operator sees each door
    published: tuple[PublishedPort, ...] = ()
    # the SPIRE version each component (``server/<name>``, ``agent/<name>``) will run,
    # checked against the last `up`'s record by runtime.core.versions
    versions: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    def of(self, kind: str) -> list[Change]:
        """The changes acting on one kind of thing (``process``, ``entry``, ...)."""
        return [c for c in self.changes if c.kind == kind]

    def to_json(self) -> str:
        """The plan as JSON (what ``plan --output json`` prints), indented by 2.

        Why by hand: ``json.dumps`` with ``indent`` runs the pure-Python encoder, which was
        0.36 s of a 50k-entry plan's 2 s; each change is written with the C string encoder
        in the same layout instead (byte for byte what ``json.dumps(..., indent=2)`` gives:
        a unit test compares the two), and the rest goes through ``json.dumps`` as before.
        """
        text = json.dumps(
            {
                "topology": self.topology,
                "target": self.target,
                "changes": [],
                "notes": list(self.notes),
                "unchanged": self.unchanged,
                "published": [asdict(p) for p in self.published],
                "versions": dict(self.versions),
            },
            indent=2,
        )
        if not self.changes:
            return text
        # The first '"changes": []' is the key: the two values before it are JSON strings,
        # whose quotes are escaped, so neither can hold it.
        changes = ",\n".join(_change_json(c) for c in self.changes)
        return text.replace('\n  "changes": []', f'\n  "changes": [\n{changes}\n  ]', 1)


def _change_json(c: Change, _str: Callable[[str], str] = encode_basestring_ascii) -> str:
    """One change as ``json.dumps(..., indent=2)`` writes it at the depth of the plan's list."""
    if c.fields:
        items = ",\n".join(f"        {_str(f)}" for f in c.fields)
        fields = f"[\n{items}\n      ]"
    else:
        fields = "[]"
    return (
        f'    {{\n      "action": {_str(c.action)},\n      "kind": {_str(c.kind)},\n'
        f'      "name": {_str(c.name)},\n      "detail": {_str(c.detail)},\n'
        f'      "fields": {fields}\n    }}'
    )


@dataclass(frozen=True)
class WorkloadAddress:
    """Where a workload of the topology serves, as its clients reach it on this target."""

    workload: str
    host: str
    port: int
    spiffe_id: SpiffeId

    @property
    def url(self) -> str:
        """``scheme://host:port`` of the workload."""
        return f"https://{self.host}:{self.port}"


@dataclass(frozen=True)
class WorkloadViews:
    """Everything one read gives of a workload's identity, as its agent gives it to that
    workload: its X.509 context, the JWT bundles it may trust, a JWT-SVID per audience."""

    x509: X509Context
    jwt_bundles: BundleSet[JwtBundle]
    jwt_svids: Mapping[str, JwtSvid] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentHealth:
    """One row of `status`: a server, agent, workload or the target's own controller."""

    name: str
    kind: str  # server | agent | workload | sidecar | monitoring | supervisor
    pid: int | None
    running: bool
    healthy: bool
    detail: str
    restarts: int = 0
    last_exit: str | None = None
    svid_expires_at: int | None = None  # Unix seconds of the component's X.509-SVID
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerReplica:
    """One running copy of a server (a pod on Kubernetes, the one process locally).

    ``leader`` says whether its spire-controller-manager holds the leader Lease; None where
    no election runs (one replica, or no controller manager)."""

    name: str
    ready: bool
    leader: bool | None = None


@runtime_checkable
class Deployment(Protocol):
    """A topology made real on one target. Every method works on a deployment that `up`
    left running, from any process (``spire_fabric.deploy.attach(name)`` returns one)."""

    @property
    def name(self) -> str:
        """The topology's name (also the deployment's)."""
        ...

    @property
    def target(self) -> Target:
        """Which target runs it: ``local`` or ``kubernetes``."""
        ...

    @property
    def topology(self) -> Topology:
        """The topology as this target runs it (local ports, selectors, datastores)."""
        ...

    @property
    def entry_owner(self) -> str:
        """The owner under which this deployment's entries are managed (`apply_entries`)."""
        ...

    # -- reaching the parts ----------------------------------------------------------------

    def server(self, name: str) -> SpireServerClient:
        """A client of that server's API (the caller closes it, or uses ``with``)."""
        ...

    def server_health(self, name: str) -> tuple[bool, bool]:
        """(live, ready) as the server's health endpoint reports them."""
        ...

    def server_replicas(self, name: str) -> tuple[ServerReplica, ...]:
        """Every replica of that server that exists now, ready or not."""
        ...

    def replica_server(self, name: str, replica: str) -> SpireServerClient:
        """A client of that one replica's own API (not the Service in front of them all):
        what `verify` and `rotate` need where each replica holds its own CA."""
        ...

    def replica_server_svid(self, name: str, replica: str) -> tuple[x509.Certificate, ...]:
        """The X.509-SVID chain (leaf first) that one replica serves its APIs with, from a
        handshake, verified against the trust domain's bundle: what it chains to now."""
        ...

    def restart_replica(self, name: str, replica: str) -> None:
        """Restart that one replica of the server and return once it is ready again (on
        Kubernetes its pod deleted and the StatefulSet's replacement ready). A target that
        runs no replicas refuses it."""
        ...

    def server_info(self, name: str) -> ServerInfo:
        """Uptime, counts and the SVID that server serves with (locally its Debug API; on
        Kubernetes, where that API is out of reach, the same facts read other ways)."""
        ...

    def bundle_endpoint_url(self, name: str) -> str:
        """Where that server's federation bundle endpoint is reached from here."""
        ...

    def agent_endpoint(self, name: str) -> str:
        """The Workload API address of that agent as its workloads dial it
        (``unix:///…``): locally a socket on this machine, on Kubernetes the socket as the
        agent's pods mount it (to fetch a workload's identity from here, use
        :meth:`x509_context`)."""
        ...

    def agent_healthy(self, name: str) -> bool:
        """Whether that agent's health endpoint reports it healthy."""
        ...

    def agent_id(self, name: str) -> SpiffeId | None:
        """The SPIFFE ID the agent attested as (None if it never attested)."""
        ...

    def agent_svid_chain(self, name: str) -> tuple[x509.Certificate, ...] | None:
        """That agent's own X.509-SVID chain, leaf first, as the agent keeps it: what tells
        which authority signed it (SPIRE's ListAgents gives only its serial and expiry).
        Locally read from the agent's data directory; None where it cannot be read (not
        attested yet; on Kubernetes always: the agent's data directory is inside its pods,
        whose image has no shell to read it with)."""
        ...

    def workload_address(self, name: str) -> WorkloadAddress | None:
        """Where that workload serves (None if it does not listen or does not run here)."""
        ...

    def telemetry_endpoint(self, component: str) -> tuple[str, int] | None:
        """(host, port) where that server's or agent's Prometheus telemetry is scraped from
        here (on Kubernetes a port-forward to its pod); None if it renders no telemetry."""
        ...

    def monitoring_urls(self) -> tuple[str, str] | None:
        """(Prometheus URL, Alertmanager URL) reachable from here, or None when the
        deployment runs no monitoring (no ``monitoring:``, or not on this target yet)."""
        ...

    def root_ca(self) -> x509.Certificate | None:
        """The topology's offline root (Enterprise Root CA), if it has a CA hierarchy."""
        ...

    @property
    def ca_directory(self) -> Path:
        """Where the topology's CA hierarchy (all its generations) lives on this machine
        (a :class:`~spire_fabric.runtime.core.CaStore` reads it)."""
        ...

    def place_signing_ca(self, server: str, ca: SigningCa) -> None:
        """Put ``ca`` where that server's disk UpstreamAuthority reads it (locally its
        three files, on Kubernetes its upstream-CA Secret, made as `up` makes them). The
        server reads it at its next mint of an X.509 authority; on Kubernetes only once
        the kubelet has refreshed the Secret volume (up to about a minute), so a caller
        checks what the next prepared authority is signed by."""
        ...

    def desired_entries(self, server: str) -> list[Entry]:
        """The registration entries this deployment keeps on that server."""
        ...

    def entry_plan(self, server: str) -> EntryPlan:
        """How that server's entries differ from :meth:`desired_entries` (empty: none)."""
        ...

    # -- a workload's identity, as its agent gives it to that workload ---------------------

    def x509_context(self, workload: str) -> X509Context:
        """The workload's X.509-SVIDs and bundles, fetched as that workload (locally from
        its agent's socket; on Kubernetes inside a pod of its service account)."""
        ...

    def jwt_svid(self, workload: str, audience: str) -> JwtSvid:
        """A JWT-SVID for ``audience``, fetched as that workload."""
        ...

    def jwt_bundles(self, workload: str) -> BundleSet[JwtBundle]:
        """The JWT bundles that workload may trust, fetched as that workload."""
        ...

    def workload_views(self, workload: str, audiences: Sequence[str] = ()) -> WorkloadViews:
        """All of the above in one read (a JWT-SVID per audience): where a read is costly
        (on Kubernetes an exec, in a probe pod for a workload that only is registered),
        what needs several views of a workload asks once. Fails as a whole; a caller that
        must tell which view fails asks for each on its own."""
        ...

    # -- a workload's managed files ({files} in its run description) ----------------------

    def workload_file(self, workload: str, name: str) -> bytes | None:
        """One of the workload's managed files as the workload reads it (None: not there
        yet). Locally a file under the state directory; on Kubernetes a key of the
        workload's ``<name>-files`` Secret."""
        ...

    def put_workload_file(self, workload: str, name: str, data: bytes) -> None:
        """Write one managed file; the running workload sees it without a restart (locally
        at once, on Kubernetes when the kubelet refreshes the Secret volume, within about
        a minute). A workload whose run description has no ``{files}`` is refused."""
        ...

    # -- lifecycle -------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse what `up` cannot do before it writes anything (raises the target's
        :class:`~spire_fabric.runtime.core.UpError`): locally ports taken by others and
        socket paths too long; on Kubernetes contexts, permissions, foreign namespaces,
        taken NodePorts, too few nodes. `up` checks too; this lets a caller refuse before
        it reads the plan."""
        ...

    def plan(self) -> DeploymentPlan:
        """What `up` would create or change, before anything happens."""
        ...

    def up(
        self, report: StepReporter = no_report, plan: DeploymentPlan | None = None
    ) -> DeploymentPlan:
        """Apply the plan (idempotent); returns the plan that was applied. ``plan``: one
        already computed and shown (else computed here)."""
        ...

    def status(self, svids: bool = True) -> list[ComponentHealth]:
        """One row per server, agent, workload and the target's own controller.

        ``svids=False`` leaves out when each component's SVID expires: reading it is a
        Workload API call as each workload (on Kubernetes an exec into its pod, and one
        into each sidecar pod, a second or more each on a busy node). `verify` asks
        whether each component runs, and reads every identity once on its own."""
        ...

    def close(self) -> None:
        """Release what reaching the parts holds (connections, port-forwards); the
        deployment keeps running. Also the end of ``with deployment:``."""
        ...

    def __enter__(self) -> Deployment:
        """``with deployment:`` closes it at the end."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Calls :meth:`close`."""
        ...

    def down(self, purge: bool = False) -> list[str]:
        """Stop what `up` started, and nothing else; ``purge`` also deletes the state.
        Returns one line per thing it stopped or deleted (``pid 4242 (agent:x)``,
        ``cluster: Kind namespace/name``), empty when nothing was running."""
        ...
