"""Continuous traffic through every sidecar path of the enterprise preset, counted, with the
certificates each path used, for the rotation-under-load test (issue 21, item 5).

Why it exists: a sidecar is the part that must rotate for a program that cannot. "No request
fails over two rotations" needs traffic on every path a sidecar carries, the whole time,
and proof that the certificates did change underneath it:

- ``client-sidecar``: plain HTTP with keep-alive (what api-poller speaks) to api-poller's
  client-mode ghostunnel on 127.0.0.1, which carries it to enterprise-api over mTLS as
  api-poller (``GET /health``). Its SVIDs are seen where ghostunnel gets them: the agent.
- ``server-sidecar``: security-gateway's SVID, a new mTLS connection per request to
  inventory's server-mode ghostunnel, then nginx (``GET /items``). The serial of the
  certificate the sidecar presented is read off each handshake.
- ``server-sidecar-via-api``: upstream-client over keep-alive mTLS to the gateway's
  ``GET /inventory``: gateway -> enterprise-api (our SDK, its own pool to inventory) ->
  inventory's ghostunnel -> nginx. The API's SVIDs are seen at its agent.
- ``files-nginx``: security-gateway's SVID, a new mTLS connection per request to catalog's
  nginx, which terminates TLS itself with the files the helper writes and reloads on its
  SIGHUP; the serial nginx served is read off each handshake.
- ``files-nginx-keepalive``: the same over keep-alive connections, so requests also ride
  connections that an nginx reload hands to a retiring worker.

Keep-alive flows retire their connections after ``max_age`` seconds, so new handshakes
happen all along. Both targets: the client sidecar's plain port is 127.0.0.1 of the machine
locally, and on Kubernetes 127.0.0.1 inside api-poller's pod, reached through a port-forward
(which enters the pod's network namespace); the agent-side witnesses are read there with
``Deployment.x509_context`` (an exec in the pod: :class:`drill.load.PolledX509Source`).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from spire_fabric.examples._http import ConnectionPool  # type: ignore[import-not-found]

from drill.load import (
    GATEWAY,
    UPSTREAM_CLIENT,
    LoadFailure,
    LoadReport,
    _expect,
    _Flow,
    _reason,
    workload_x509_source,
)
from spire_fabric.identity import SpiffeId
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.tls import authorize_id, mtls_client_context

__all__ = ["SIDECAR_FLOWS", "SidecarLoad"]

API = "enterprise-api"
INVENTORY = "inventory"
CATALOG = "catalog"
POLLER = "api-poller"
SIDECAR_FLOWS = ("client-sidecar", "server-sidecar", "server-sidecar-via-api", "files-nginx",
                 "files-nginx-keepalive")  # fmt: skip
# rotation witnesses: the certificates each path presented (on the wire, or at the agent
# where the presenting side is a client we cannot watch from here)
WITNESSES = {
    "client-sidecar": "api-poller's SVID at its agent (the client sidecar presents it)",
    "server-sidecar": "the certificate inventory's sidecar presented, per handshake",
    "server-sidecar-via-api": "enterprise-api's SVID at its agent (presented to inventory)",
    "files-nginx": "the certificate catalog's nginx served, per handshake",
}


def _get_presenting(host: str, port: int, context: ssl.SSLContext, path: str,
                    timeout: float) -> tuple[int, bytes, x509.Certificate]:  # fmt: skip
    """One request on a new TLS connection: status, body, and the server's certificate."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        tls = context.wrap_socket(raw, server_hostname=None)
    except BaseException:
        raw.close()
        raise
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = tls
    try:
        der = tls.getpeercert(binary_form=True)
        if der is None:
            raise LoadFailure("the server presented no certificate")
        conn.request("GET", path, headers={"Connection": "close"})
        answer = conn.getresponse()
        return answer.status, answer.read(), x509.load_der_x509_certificate(der)
    finally:
        conn.close()


def client_sidecar_address(d: Deployment, port: int) -> tuple[str, int]:
    """Where this process reaches api-poller's client sidecar (its plain port ``port`` on
    loopback): the port itself locally, a port-forward into the pod on Kubernetes."""
    if d.target == "local":
        return "127.0.0.1", port
    from spire_fabric.render.kubernetes import selector_labels

    w = d.topology.workload(POLLER)
    assert w.kubernetes is not None
    access = d.access  # type: ignore[attr-defined]
    pf = access.forward(f"sidecar:{POLLER}:{port}", access.workload_cluster(POLLER),
                        w.kubernetes.namespace, selector_labels(POLLER, "workload"), port)
    return "127.0.0.1", pf.local_port


class SidecarLoad:
    """Traffic on every flow of :data:`SIDECAR_FLOWS`, one thread each, until :meth:`stop`;
    a watcher thread samples the agent-side SVIDs every ``sample`` seconds.

    ``serials[witness]`` holds every certificate serial seen on that path and
    ``expiries[witness]`` the not-after of each: a path that kept its first certificate
    would fail once that expired, so traffic that outlives ``first_expiry`` proves rotation
    as much as the count of serials does. Start-up waits until each flow succeeded once.
    """

    def __init__(self, d: Deployment, *, pause: float = 0.02, max_age: float = 2.0,
                 timeout: float = 10.0, sample: float = 0.5, warmup: float = 60.0) -> None:
        t = d.topology
        names = {w.name for w in t.workloads}
        missing = [w for w in (API, GATEWAY, UPSTREAM_CLIENT, INVENTORY, CATALOG, POLLER)
                   if w not in names]  # fmt: skip
        if missing:
            raise ValueError(f"SidecarLoad needs the enterprise preset's sidecar workloads; "
                             f"topology {t.name!r} lacks {', '.join(missing)}")  # fmt: skip
        self.d, self.pause, self.max_age, self.timeout, self.sample, self.warmup = (
            d, pause, max_age, timeout, sample, warmup)  # fmt: skip
        self._ids = {w: SpiffeId.parse(str(t.workload(w).spiffe_id))
                     for w in (API, GATEWAY, INVENTORY, CATALOG, POLLER)}  # fmt: skip
        (client,) = (s for s in t.workload(POLLER).sidecars if s.mode == "client")
        assert client.listen_port is not None  # validated: a client sidecar has one
        self._client_port: int = client.listen_port
        self.serials: dict[str, set[int]] = {w: set() for w in WITNESSES}
        self.expiries: dict[str, dict[int, float]] = {w: {} for w in WITNESSES}
        self._seen_lock = threading.Lock()
        self._sources: dict[str, Any] = {}
        self._pools: list[ConnectionPool] = []
        self._flows: dict[str, _Flow] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._started = self._stopped = 0.0

    # ---- lifecycle

    def __enter__(self) -> SidecarLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            for w in (GATEWAY, UPSTREAM_CLIENT, API, POLLER):
                self._sources[w] = workload_x509_source(self.d, w, 1.0)
            host, port = client_sidecar_address(self.d, self._client_port)
            self._client = self._pool(f"http://{host}:{port}", None)
            self._via_api = self._pool(self._url(GATEWAY),
                                       self._mtls(UPSTREAM_CLIENT, GATEWAY))  # fmt: skip
            self._catalog = self._pool(self._url(CATALOG), self._mtls(GATEWAY, CATALOG))
            calls: dict[str, Callable[[], None]] = {
                "client-sidecar": self._client_sidecar,
                "server-sidecar": self._server_sidecar,
                "server-sidecar-via-api": self._server_sidecar_via_api,
                "files-nginx": self._files_nginx,
                "files-nginx-keepalive": self._files_nginx_keepalive,
            }
            self._flows = {name: _Flow(name, call) for name, call in calls.items()}
            self._warm_up()
        except BaseException:
            self._close()
            raise
        self._started = time.monotonic()
        for target, name in [(self._watch, "sidecar-watch"),
                             *((self._drive_one(f), f"sidecar-{f.name}")
                               for f in self._flows.values())]:  # fmt: skip
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> LoadReport:
        """Stop every thread (each finishes the request it is in) and report. Idempotent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        if not self._stopped:
            self._stopped = time.monotonic()
        self._close()
        return self.report()

    def report(self) -> LoadReport:
        end = self._stopped or time.monotonic()
        return LoadReport(end - self._started if self._started else 0.0,
                          {name: f.count() for name, f in self._flows.items()})  # fmt: skip

    def rotations(self) -> dict[str, int]:
        """Distinct certificates seen per witness, minus one: how many rotations it crossed."""
        with self._seen_lock:
            return {w: max(0, len(s) - 1) for w, s in self.serials.items()}

    def first_expiry(self) -> dict[str, float]:
        """Per witness, when (epoch seconds) the earliest certificate seen expired."""
        with self._seen_lock:
            return {w: min(e.values()) for w, e in self.expiries.items() if e}

    def _close(self) -> None:
        for pool in self._pools:
            pool.close()
        for source in self._sources.values():
            source.close()
        self._sources.clear()

    def _warm_up(self) -> None:
        deadline = time.monotonic() + self.warmup
        for flow in self._flows.values():
            while True:
                try:
                    flow.call()
                    break
                except Exception as err:  # retried until the deadline
                    if time.monotonic() > deadline:
                        why = f"flow {flow.name} never succeeded in {self.warmup:g} s"
                        raise LoadFailure(f"{why}: {_reason(err)}") from err
                    time.sleep(0.5)

    def _drive_one(self, flow: _Flow) -> Callable[[], None]:
        def drive() -> None:
            while not self._stop.is_set():
                try:
                    flow.call()
                except Exception as err:  # every failure is counted with its reason
                    with flow.lock:
                        flow.failures += 1
                        flow.reasons[_reason(err)] += 1
                else:
                    with flow.lock:
                        flow.requests += 1
                self._stop.wait(self.pause)

        return drive

    def _watch(self) -> None:
        while not self._stop.is_set():
            for witness, who in (("client-sidecar", POLLER), ("server-sidecar-via-api", API)):
                try:
                    self._saw(witness, self._sources[who].get_x509_svid().leaf)
                except Exception:  # a source between updates: the next sample sees it
                    continue
            self._stop.wait(self.sample)

    def _saw(self, witness: str, cert: x509.Certificate) -> None:
        with self._seen_lock:
            self.serials[witness].add(cert.serial_number)
            self.expiries[witness][cert.serial_number] = cert.not_valid_after_utc.timestamp()

    # ---- addresses and contexts

    def _url(self, workload: str) -> str:
        address = self.d.workload_address(workload)
        if address is None:
            raise LoadFailure(f"{workload} has no address on this target")
        return f"https://{address.host}:{address.port}"

    def _mtls(self, who: str, server: str) -> ssl.SSLContext:
        source = self._sources[who]
        return mtls_client_context(source, source, authorize_id(self._ids[server]))

    def _pool(self, url: str, context: ssl.SSLContext | None) -> ConnectionPool:
        pool = ConnectionPool(url, context, size=2, timeout=self.timeout, max_age=self.max_age)
        self._pools.append(pool)
        return pool

    # ---- the flows (each raises on anything but the expected answer)

    def _client_sidecar(self) -> None:
        answer = self._client.request("GET", "/health")
        _expect(answer.status, answer.body, 200)
        if str(self._ids[API]) not in answer.body.decode(errors="replace"):
            raise LoadFailure(f"not enterprise-api's /health: {answer.body[:160]!r}")

    def _fresh(self, workload: str, witness: str) -> None:
        address = self.d.workload_address(workload)
        if address is None:
            raise LoadFailure(f"{workload} has no address on this target")
        status, body, cert = _get_presenting(address.host, address.port,
                                             self._mtls(GATEWAY, workload), "/items",
                                             self.timeout)  # fmt: skip
        _expect(status, body, 200)
        if f'"service":"{workload}"'.encode() not in body.replace(b" ", b""):
            raise LoadFailure(f"not {workload}'s /items: {body[:160]!r}")
        self._saw(witness, cert)

    def _server_sidecar(self) -> None:
        self._fresh(INVENTORY, "server-sidecar")

    def _files_nginx(self) -> None:
        self._fresh(CATALOG, "files-nginx")

    def _server_sidecar_via_api(self) -> None:
        answer = self._via_api.request("GET", "/inventory")
        _expect(answer.status, answer.body, 200)
        if answer.json()["inventory"]["service"] != INVENTORY:
            raise LoadFailure(f"not inventory's items: {answer.body[:160]!r}")

    def _files_nginx_keepalive(self) -> None:
        answer = self._catalog.request("GET", "/items")
        _expect(answer.status, answer.body, 200)
        if answer.json()["service"] != CATALOG:
            raise LoadFailure(f"not catalog's items: {answer.body[:160]!r}")
