"""A SPIRE server in a pod, reached like an operator would: the SPIRE CLI through exec on
the server's own socket mints a short-lived admin X.509-SVID (its ID is in the server's
``admin_ids``), and the Server API is then called over TCP through a port-forward of our
own, authenticated both ways. The key never touches a disk or a log."""

from __future__ import annotations

import base64
import datetime
import socket
import threading
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_der_private_key
from kubernetes.dynamic.exceptions import NotFoundError

from spire_fabric.identity import X509Bundle, X509Svid, installer_admin_id, spire_server_id
from spire_fabric.render import RenderPaths
from spire_fabric.render.kubernetes import controller_manager_lease_name, selector_labels
from spire_fabric.runtime._served import served_server_svid
from spire_fabric.runtime.deployment import ServerReplica
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, label_selector
from spire_fabric.runtime.kubernetes._objects import resource
from spire_fabric.runtime.kubernetes._pods import PortForward, exec_json, running_pod
from spire_fabric.server import CertInfo, ServerInfo, SpireServerClient
from spire_fabric.tls import authorize_id, tls_client_context
from spire_fabric.topology import Server

SPIRE_SERVER_BIN = "/opt/spire/bin/spire-server"
SERVER_CONTAINER = "spire-server"
ADMIN_SVID_TTL = "1h"
_RENEW_BEFORE_S = 300
# The admin SVID and the roots it came with are minted again after this long: a root
# rotation appends a new root, moves the server's own SVID under it and revokes the old
# one within one long-running command (`rotate root`), and a client still trusting only
# the roots of its first mint (or presenting an SVID of the revoked root) can no longer
# reach the server. A mint is one exec; the rotation's waits ride out the seconds between.
_REMINT_AFTER_S = 10
PATHS = RenderPaths.kubernetes()


@dataclass
class ServerAccess:
    """Admin access to one server in its pod; one port-forward, reused while it lives."""

    conn: ClusterApi
    server: Server
    # One replica's pod (its own API, its own CA); None: whichever replica is ready.
    fixed_pod: str | None = None
    _svid: X509Svid | None = None
    _minted_at: float = 0.0
    _bundle: X509Bundle | None = None
    _forward: PortForward | None = None
    _pod: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def namespace(self) -> str:
        assert self.server.kubernetes is not None
        return self.server.kubernetes.namespace

    def pod(self) -> str:
        if self.fixed_pod is not None:
            return self.fixed_pod
        return running_pod(self.conn, self.namespace, selector_labels(self.server.name, "server"))

    def replicas(self) -> tuple[ServerReplica, ...]:
        """Every pod of the server (sorted by name), ready or not, and which one's
        controller manager holds the leader Lease when they elect one."""
        pods = self.conn.core.list_namespaced_pod(
            self.namespace,
            label_selector=label_selector(selector_labels(self.server.name, "server")),
        ).items
        leader = self._leader()
        out = []
        for pod in sorted(pods, key=lambda p: str(p.metadata.name)):
            statuses = pod.status.container_statuses or []
            ready = (pod.metadata.deletion_timestamp is None and bool(statuses)
                     and all(cs.ready for cs in statuses))  # fmt: skip
            name = str(pod.metadata.name)
            out.append(ServerReplica(name, ready, None if leader is None else name == leader))
        return tuple(out)

    def _leader(self) -> str | None:
        """The pod named by the controller managers' Lease, "" when none holds it now,
        None when there is no Lease (no election runs: one replica, or no controller
        manager; `verify` knows from the topology which it should be).
        controller-runtime writes ``<hostname>_<uuid>`` as holder; a pod's hostname is its
        name. A Lease not renewed within its duration has no holder (its leader died)."""
        res = resource(self.conn, "coordination.k8s.io/v1", "Lease")
        try:
            lease = res.get(name=controller_manager_lease_name(self.server),
                            namespace=self.namespace).to_dict()  # fmt: skip
        except NotFoundError:
            return None
        spec = lease.get("spec") or {}
        holder, renewed = spec.get("holderIdentity") or "", spec.get("renewTime")
        duration = spec.get("leaseDurationSeconds") or 0
        if not holder or not renewed:
            return ""
        when = datetime.datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
        age = (datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()
        return str(holder).split("_", 1)[0] if age <= duration else ""

    def mint_admin_svid(self) -> tuple[X509Svid, X509Bundle]:
        """``spire-server x509 mint`` on the server's socket, JSON out."""
        td = self.server.trust_domain
        pod = self.pod()
        data = exec_json(
            self.conn,
            self.namespace,
            pod,
            SERVER_CONTAINER,
            [
                SPIRE_SERVER_BIN, "x509", "mint",
                "-socketPath", PATHS.server_socket(self.server.name),
                "-spiffeID", str(installer_admin_id(td)),
                "-ttl", ADMIN_SVID_TTL,
                "-output", "json",
            ],
            "spire-server x509 mint",
        )  # fmt: skip
        result = data[0] if isinstance(data, list) else data
        chain = tuple(x509.load_der_x509_certificate(base64.b64decode(c))
                      for c in result["x509_svid"])  # fmt: skip
        key = load_der_private_key(base64.b64decode(result["private_key"]), None)
        roots = tuple(x509.load_der_x509_certificate(base64.b64decode(c))
                      for c in result["root_cas"])  # fmt: skip
        svid = X509Svid(installer_admin_id(td), chain, key)
        return svid, X509Bundle(td, roots)

    def _ensure(self) -> tuple[PortForward, X509Svid, X509Bundle]:
        """A fresh-enough admin SVID and a port-forward to the server's current pod."""
        with self._lock:
            now = time.time()
            if (
                self._svid is None
                or self._svid.leaf.not_valid_after_utc.timestamp() - now < _RENEW_BEFORE_S
                or now - self._minted_at > _REMINT_AFTER_S
            ):
                self._svid, self._bundle = self.mint_admin_svid()
                self._minted_at = now
            pod = self.pod()
            if self._forward is None or pod != self._pod:
                if self._forward is not None:
                    self._forward.close()
                self._forward = PortForward(self.conn, self.namespace, pod, self.server.ports.api)
                self._pod = pod
            assert self._bundle is not None
            return self._forward, self._svid, self._bundle

    def client(self, timeout: float = 30.0) -> SpireServerClient:
        return self._client(*self._ensure(), timeout=timeout)

    def _client(
        self, forward: PortForward, svid: X509Svid, bundle: X509Bundle, *, timeout: float
    ) -> SpireServerClient:
        return SpireServerClient(
            forward.address,
            svid_source=svid,
            bundle_source=bundle,
            server_trust_domain=self.server.trust_domain,
            timeout=timeout,
        )

    def server_info(self) -> ServerInfo:
        """What the Debug API's GetInfo reports locally, read the ways a port-forward allows
        (that API is served on the server's admin socket only): counts from the Server API,
        uptime from the container's start, and the SVID the server serves with from a
        verified TLS handshake (its leaf only: Python's ssl gives no more of the chain)."""
        forward, svid, bundle = self._ensure()
        with self._client(forward, svid, bundle, timeout=30.0) as api:
            agents = api.count_agents(timeout=10)
            entries = api.count_entries(timeout=10)
            federated = api.count_bundles(timeout=10)
        td = self.server.trust_domain
        # the leaf from a stdlib handshake, as the clusters last proved it; rotate root's
        # replica path reads whole chains with served_svid (pyOpenSSL). One reader for
        # both once a cluster run covers it.
        context = tls_client_context(bundle, authorize_id(spire_server_id(td)))
        context.set_alpn_protocols(["h2"])  # gRPC servers refuse clients without it
        with socket.create_connection(("127.0.0.1", forward.local_port), timeout=10) as raw, \
                context.wrap_socket(raw) as tls:  # fmt: skip
            der = tls.getpeercert(binary_form=True)
        assert der is not None  # verified inside the handshake: a peer certificate exists
        leaf = x509.load_der_x509_certificate(der)
        return ServerInfo(
            uptime_seconds=self._uptime(forward.pod),
            agents_count=agents,
            entries_count=entries,
            federated_bundles_count=federated,
            svid_chain=(
                CertInfo(
                    spire_server_id(td),
                    int(leaf.not_valid_after_utc.timestamp()),
                    leaf.subject.rfc4514_string(),
                ),
            ),
        )

    def served_svid(self) -> tuple[x509.Certificate, ...]:
        """The chain this server (this replica, with ``fixed_pod``) serves its APIs with."""
        forward, _, bundle = self._ensure()
        return served_server_svid("127.0.0.1", forward.local_port, bundle)

    def _uptime(self, pod_name: str) -> int:
        pod = self.conn.core.read_namespaced_pod(pod_name, self.namespace)
        for cs in pod.status.container_statuses or []:
            if cs.name == SERVER_CONTAINER and cs.state and cs.state.running:
                started: datetime.datetime = cs.state.running.started_at
                now = datetime.datetime.now(datetime.timezone.utc)
                return max(0, int((now - started).total_seconds()))
        return 0

    def health(self) -> tuple[bool, bool]:
        """(live, ready) of the spire-server container of any replica: its probes call
        /live and /ready."""
        try:
            pods = self.conn.core.list_namespaced_pod(
                self.namespace,
                label_selector=label_selector(selector_labels(self.server.name, "server")),
            ).items
        except Exception:
            return False, False
        # Any replica: the Service sends callers to whichever is ready (the HA checks of
        # `verify` look at each one).
        live = ready = False
        for pod in pods:
            for cs in pod.status.container_statuses or []:
                if cs.name == SERVER_CONTAINER:
                    running = bool(cs.state and cs.state.running)
                    live, ready = live or running, ready or (running and bool(cs.ready))
        return live, ready

    def close(self) -> None:
        if self._forward is not None:
            self._forward.close()
            self._forward = None

