"""Continuous traffic through the enterprise preset's workloads, on any target.

Why it exists: a key-compromise drill claims *zero failed requests* while every authority
is rotated and revoked. That claim needs traffic on every path a rotation can break, running
the whole time, counted, with each failure's reason kept:

- ``external``: a client without SPIFFE identity (a new TLS connection per request, so each
  request re-verifies) reads ``GET /records`` through the security gateway with an API key,
  checking the gateway by its DNS name against the Enterprise Root CA and the gateway trust
  domain's current X.509 authorities (during a root rotation, both roots);
- ``external-create``: the same client creates a record through the gateway once a second
  (the gateway calls enterprise-api with its own SVID), so the running data-processor has
  new records each cycle and posts its results with its JWT-SVIDs the whole time;
- ``upstream-mtls-gateway``: ``upstream-client`` (enterprise-root.org) over mutual TLS
  through the gateway (which then calls enterprise-api with its own SVID);
- ``upstream-mtls-api``: ``upstream-client`` over mutual TLS straight to enterprise-api;
- ``processor-jwt``: ``data-processor`` (downstream.example.org) posts a result to
  enterprise-api over mutual TLS with a JWT-SVID for the API's audience;
- ``cross-domain-jwt``: ``upstream-client`` presents a JWT-SVID of enterprise-root.org to
  the gateway of downstream.example.org, which validates it with its federated JWT bundle.

Built on :class:`~spire_fabric.runtime.deployment.Deployment` only, so the same load runs
against the local target and the Kubernetes clusters. Each connection is new, so every
request performs a full handshake against the identities and bundles of that moment.
JWT-SVIDs are fetched from the agent for each request, as go-spiffe's JWTSource does: the
agent drops JWT-SVIDs of a tainted key (SPIRE >= 1.9), a process-side cache would not.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

# the examples are installed as spire_fabric.examples from examples/ (setup.py's
# package_dir), a mapping mypy does not follow from this folder
from spire_fabric.examples.security_gateway.clients import (  # type: ignore[import-not-found]
    add_client,
    dump_key_file,
    parse_key_file,
)

from spire_fabric.identity import BundleSet, SpiffeId, TrustDomain, X509Bundle, X509Svid
from spire_fabric.runtime.core.ca import CaStore
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.tls import authorize_id, mtls_client_context, tls_client_context
from spire_fabric.workload import X509Context, X509Source, pick_by_id

__all__ = ["FLOWS", "FlowCount", "LoadReport", "TrafficLoad"]

GATEWAY = "security-gateway"
API = "enterprise-api"
PROCESSOR = "data-processor"
UPSTREAM_CLIENT = "upstream-client"
KEYS_FILE = "api-keys.json"
LOAD_CLIENT = "drill-load"

# How often the external client re-reads ``deploy trust-anchor``; a root rotation gives
# such clients DRILL_STEPS' ``--external-grace`` (more than this) before it signs under the
# new root.
ANCHOR_REFRESH = 2.0
# issue 22's drill, the same on both targets: each server's authorities, then the root
DRILL_STEPS: tuple[tuple[str, ...], ...] = (
    ("x509", "--server", "spire-downstream-server", "--revoke"),
    ("jwt", "--server", "spire-downstream-server", "--revoke"),
    ("x509", "--server", "spire-upstream-server", "--revoke"),
    ("jwt", "--server", "spire-upstream-server", "--revoke"),
    ("root", "--revoke", "--external-grace", f"{2 * ANCHOR_REFRESH:g}"),
)
FLOWS = ("external", "external-create", "upstream-mtls-gateway", "upstream-mtls-api",
         "processor-jwt", "cross-domain-jwt")  # fmt: skip
CREATE_PAUSE = 1.0  # a new record a second keeps the real data-processor posting results


class LoadFailure(Exception):
    """One request that did not get the answer it should have; the message is the reason."""


@dataclass(frozen=True)
class FlowCount:
    """One flow's requests (answered as expected) and failures, with each reason counted."""

    requests: int
    failures: int
    reasons: dict[str, int]


@dataclass(frozen=True)
class LoadReport:
    """What the load did between start and stop, per flow."""

    seconds: float
    flows: dict[str, FlowCount]

    @property
    def requests(self) -> int:
        """Requests that got the expected answer, over every flow."""
        return sum(f.requests for f in self.flows.values())

    @property
    def failures(self) -> int:
        return sum(f.failures for f in self.flows.values())

    def reasons(self) -> list[str]:
        """Every distinct failure as ``flow: reason (xN)``, most frequent first."""
        rows = [(n, f"{flow}: {reason}") for flow, c in self.flows.items()
                for reason, n in c.reasons.items()]  # fmt: skip
        return [f"{text} (x{n})" for n, text in sorted(rows, reverse=True)]

    def summary(self) -> str:
        """One line: totals, then each flow's requests/failures."""
        per = ", ".join(f"{k} {v.requests}/{v.failures}" for k, v in self.flows.items())
        return (f"{self.requests} requests, {self.failures} failed in {self.seconds:.1f} s "
                f"(ok/failed: {per})")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "requests": self.requests,
                "failures": self.failures,
                "flows": {k: {"requests": v.requests, "failures": v.failures,
                              "reasons": v.reasons} for k, v in self.flows.items()}}  # fmt: skip


# -------------------------------------------------------------- identities of the load


class PolledX509Source:
    """A workload's X.509-SVID and bundles, re-read with ``Deployment.x509_context`` every
    ``refresh`` seconds: for targets where this process cannot dial the agent's socket (on
    Kubernetes the context is fetched inside a pod of the workload's service account)."""

    def __init__(self, d: Deployment, workload: str, refresh: float) -> None:
        self._d, self._workload, self._refresh = d, workload, refresh
        self._id = SpiffeId.parse(str(d.topology.workload(workload).spiffe_id))
        self._context = self._fetch()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"x509-{workload}", daemon=True)
        self._thread.start()

    def _fetch(self) -> X509Context:
        return self._d.x509_context(self._workload)

    def _poll(self) -> None:
        while not self._stop.wait(self._refresh):
            try:
                self._context = self._fetch()
            except Exception:  # keep the last context; the next poll retries
                continue

    def get_x509_svid(self) -> X509Svid:
        svids = [s for s in self._context.svids if s.spiffe_id == self._id]
        return svids[0] if svids else self._context.default_svid

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        return self._context.bundles.get(trust_domain)

    def get_bundle_set(self) -> BundleSet[X509Bundle]:
        return BundleSet(self._context.bundles.values())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def workload_x509_source(d: Deployment, workload: str, refresh: float) -> Any:
    """The workload's live X.509 identity: the Workload API stream of its agent where this
    process can dial it (local target), else :class:`PolledX509Source`."""
    w = d.topology.workload(workload)
    if d.target == "local":
        return X509Source(endpoint=d.agent_endpoint(w.agent), picker=pick_by_id(w.spiffe_id),
                          first_update_timeout=30)  # fmt: skip
    return PolledX509Source(d, workload, refresh)


# -------------------------------------------------------------- one request


def _request(host: str, port: int, context: ssl.SSLContext, server_hostname: str | None,
             method: str, path: str, headers: dict[str, str], body: bytes | None,
             timeout: float) -> tuple[int, bytes]:  # fmt: skip
    """One HTTP/1.1 request on a new TLS connection (closed afterwards)."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        tls = context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = tls
    try:
        conn.request(method, path, body=body, headers={"Connection": "close", **headers})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _expect(status: int, body: bytes, want: int) -> None:
    if status != want:
        text = body.decode(errors="replace").strip().replace("\n", " ")
        raise LoadFailure(f"HTTP {status} (expected {want}): {text[:160]}")


def _reason(err: BaseException) -> str:
    if isinstance(err, LoadFailure):
        return str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:200]


# -------------------------------------------------------------- the load


@dataclass
class _Flow:
    name: str
    call: Callable[[], None]
    requests: int = 0
    failures: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> FlowCount:
        with self.lock:
            return FlowCount(self.requests, self.failures, dict(self.reasons))


class TrafficLoad:
    """Traffic on every flow of :data:`FLOWS`, one thread each, until :meth:`stop`.

    :meth:`start` first issues an API key for the external client (the gateway's managed
    key file, as ``issue-key`` does) and waits until every flow has succeeded once (a new
    key reaches a gateway on Kubernetes when the kubelet refreshes the Secret, within about
    a minute); only then does counting begin, so start-up is not counted as failure.
    ``with TrafficLoad(d) as load: ...`` stops it at the end; :meth:`stop` returns the report.
    """

    def __init__(self, d: Deployment, *, pause: float = 0.05, refresh: float = ANCHOR_REFRESH,
                 timeout: float = 10.0, warmup: float = 120.0) -> None:  # fmt: skip
        missing = [w for w in (GATEWAY, API, PROCESSOR, UPSTREAM_CLIENT)
                   if w not in {x.name for x in d.topology.workloads}]  # fmt: skip
        if missing:
            raise ValueError(f"TrafficLoad needs the enterprise preset's workloads; topology "
                             f"{d.topology.name!r} lacks {', '.join(missing)}")  # fmt: skip
        self.d, self.pause, self.refresh, self.timeout, self.warmup = (
            d, pause, refresh, timeout, warmup)  # fmt: skip
        t = d.topology
        self._ids = {w: SpiffeId.parse(str(t.workload(w).spiffe_id))
                     for w in (GATEWAY, API, PROCESSOR, UPSTREAM_CLIENT)}  # fmt: skip
        self._gateway_dns = (t.workload(GATEWAY).dns_names or (None,))[0]
        self._sources: dict[str, Any] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._flows: dict[str, _Flow] = {}
        # every failure with its wall-clock time, to match it with the services' logs
        self.failure_log: list[tuple[float, str, str]] = []
        self._key = ""
        self._anchors: tuple[float, ssl.SSLContext] | None = None
        self._anchor_lock = threading.Lock()
        self._started = self._stopped = 0.0

    # ---- lifecycle

    def __enter__(self) -> TrafficLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._key = self._issue_key()
            for w in (UPSTREAM_CLIENT, PROCESSOR):
                self._sources[w] = workload_x509_source(self.d, w, self.refresh)
            calls: dict[str, Callable[[], None]] = {
                "external": self._external,
                "external-create": self._external_create,
                "upstream-mtls-gateway": self._upstream_mtls_gateway,
                "upstream-mtls-api": self._upstream_mtls_api,
                "processor-jwt": self._processor_jwt,
                "cross-domain-jwt": self._cross_domain_jwt,
            }
            self._flows = {name: _Flow(name, call) for name, call in calls.items()}
            self._warm_up()
        except BaseException:
            self._close_sources()
            raise
        self._started = time.monotonic()
        for flow in self._flows.values():
            thread = threading.Thread(target=self._drive, args=(flow,), name=f"load-{flow.name}",
                                      daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def stop(self) -> LoadReport:
        """Stop every thread (each finishes the request it is in) and report. Idempotent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        if not self._stopped:
            self._stopped = time.monotonic()
        self._close_sources()
        return self.report()

    def report(self) -> LoadReport:
        """The counts so far (while running, too)."""
        end = self._stopped or time.monotonic()
        return LoadReport(end - self._started if self._started else 0.0,
                          {name: f.count() for name, f in self._flows.items()})  # fmt: skip

    def _close_sources(self) -> None:
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
                    time.sleep(1)

    def _drive(self, flow: _Flow) -> None:
        while not self._stop.is_set():
            try:
                flow.call()
            except Exception as err:  # every failure is counted with its reason
                with flow.lock:
                    flow.failures += 1
                    flow.reasons[_reason(err)] += 1
                    self.failure_log.append((time.time(), flow.name, _reason(err)))
            else:
                with flow.lock:
                    flow.requests += 1
            self._stop.wait(CREATE_PAUSE if flow.name == "external-create" else self.pause)

    # ---- the external client's key and trust anchors

    def _issue_key(self) -> str:
        raw = self.d.workload_file(GATEWAY, KEYS_FILE)
        document = parse_key_file(raw) if raw else {"clients": {}}
        new, key = add_client(document, LOAD_CLIENT, ["GET /records", "POST /records"],
                              rate=100000, burst=100000)  # fmt: skip
        self.d.put_workload_file(GATEWAY, KEYS_FILE, dump_key_file(new).encode())
        return str(key)

    def _external_context(self) -> ssl.SSLContext:
        """Trust what ``deploy trust-anchor`` prints (during a root rotation, old and new
        root), re-read every ``refresh`` seconds like a client that polls it would."""
        with self._anchor_lock:
            if self._anchors and time.monotonic() - self._anchors[0] < self.refresh:
                return self._anchors[1]
            roots = CaStore(self.d.ca_directory).trusted_roots(self.d.topology)
            if not roots:
                raise LoadFailure(f"{self.d.name} has no offline root for external clients")
            pems = b"".join(r.public_bytes(serialization.Encoding.PEM) for r in roots)
            context = ssl.create_default_context(cadata=pems.decode())
            self._anchors = (time.monotonic(), context)
            return context

    # ---- the flows (each raises on anything but the expected answer)

    def _at(self, workload: str) -> tuple[str, int]:
        address = self.d.workload_address(workload)
        if address is None:
            raise LoadFailure(f"{workload} has no address on this target")
        return address.host, address.port

    def _mtls(self, who: str, server: str) -> ssl.SSLContext:
        source = self._sources[who]
        return mtls_client_context(source, source, authorize_id(self._ids[server]))

    def _external(self) -> None:
        host, port = self._at(GATEWAY)
        status, body = _request(host, port, self._external_context(), self._gateway_dns,
                                "GET", "/records", {"Authorization": f"Bearer {self._key}"},
                                None, self.timeout)  # fmt: skip
        _expect(status, body, 200)

    def _external_create(self) -> None:
        host, port = self._at(GATEWAY)
        record = json.dumps({"customer": LOAD_CLIENT, "region": "drill", "balance": 1.0})
        headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"}
        status, body = _request(host, port, self._external_context(), self._gateway_dns,
                                "POST", "/records", headers, record.encode(),
                                self.timeout)  # fmt: skip
        _expect(status, body, 201)

    def _upstream_mtls_gateway(self) -> None:
        host, port = self._at(GATEWAY)
        status, body = _request(host, port, self._mtls(UPSTREAM_CLIENT, GATEWAY), None, "GET",
                                "/records", {}, None, self.timeout)  # fmt: skip
        _expect(status, body, 200)

    def _upstream_mtls_api(self) -> None:
        host, port = self._at(API)
        status, body = _request(host, port, self._mtls(UPSTREAM_CLIENT, API), None, "GET",
                                "/records", {}, None, self.timeout)  # fmt: skip
        _expect(status, body, 200)

    def _processor_jwt(self) -> None:
        host, port = self._at(API)
        token = self.d.jwt_svid(PROCESSOR, str(self._ids[API])).token
        result = json.dumps({"through_id": 0, "record_ids": [], "totals": {}}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status, body = _request(host, port, self._mtls(PROCESSOR, API), None, "POST",
                                "/results", headers, result, self.timeout)  # fmt: skip
        _expect(status, body, 201)

    def _cross_domain_jwt(self) -> None:
        host, port = self._at(GATEWAY)
        token = self.d.jwt_svid(UPSTREAM_CLIENT, str(self._ids[GATEWAY])).token
        source = self._sources[UPSTREAM_CLIENT]
        context = tls_client_context(source, authorize_id(self._ids[GATEWAY]))
        status, body = _request(host, port, context, None, "GET", "/records",
                                {"Authorization": f"Bearer {token}"}, None,
                                self.timeout)  # fmt: skip
        _expect(status, body, 200)



def present_jwt(d: Deployment, caller: str, target: str, token: str,
                timeout: float = 10.0) -> tuple[int, bytes]:  # fmt: skip
    """One request of ``caller`` to the running ``target`` service with ``token`` as its
    bearer JWT-SVID, as the load's JWT flows send it: ``POST /results`` to enterprise-api
    over mutual TLS, ``GET /records`` to the gateway over TLS without a client certificate.
    Returns the service's answer (status, body): whether *it* accepts the token."""
    if target not in (API, GATEWAY):
        raise ValueError(f"present_jwt: target must be {API} or {GATEWAY}, got {target!r}")
    source = workload_x509_source(d, caller, refresh=2.0)
    try:
        address = d.workload_address(target)
        if address is None:
            raise LoadFailure(f"{target} has no address on this target")
        target_id = SpiffeId.parse(str(d.topology.workload(target).spiffe_id))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if target == API:
            context = mtls_client_context(source, source, authorize_id(target_id))
            result = json.dumps({"through_id": 0, "record_ids": [], "totals": {}}).encode()
            return _request(address.host, address.port, context, None, "POST", "/results",
                            headers, result, timeout)  # fmt: skip
        # no client certificate: at the gateway, an X.509-SVID would be the identity
        context = tls_client_context(source, authorize_id(target_id))
        return _request(address.host, address.port, context, None, "GET", "/records", headers,
                        None, timeout)  # fmt: skip
    finally:
        source.close()


def present_x509(d: Deployment, svid: X509Svid, bundles: Any, target: str,
                 timeout: float = 10.0) -> str:  # fmt: skip
    """Call the running ``target`` service (``GET /records``) over mutual TLS presenting
    ``svid`` (verifying the service with ``bundles``): ``"HTTP <status>"`` if the service
    let the handshake through, else the error that ended it (a service that refuses the
    client certificate ends the handshake; under TLS 1.3 the client sees it on first read)."""
    address = d.workload_address(target)
    if address is None:
        raise LoadFailure(f"{target} has no address on this target")
    target_id = SpiffeId.parse(str(d.topology.workload(target).spiffe_id))
    context = mtls_client_context(svid, bundles, authorize_id(target_id))
    try:
        status, _ = _request(address.host, address.port, context, None, "GET", "/records", {},
                             None, timeout)  # fmt: skip
    except (OSError, http.client.HTTPException) as err:
        return _reason(err)
    return f"HTTP {status}"


# -------------------------------------------------------------- the real data-processor

_CYCLE = re.compile(r"event=cycle cycle=(\d+) outcome=(\S+)(.*)")


def workload_log(d: Deployment, workload: str) -> str:
    """The running workload's log as its target keeps it: locally its log file under the
    state directory, on Kubernetes its container's log in its running pod (through the
    API server, as ``kubectl logs``)."""
    if d.target == "local":
        path = d.ctx.log_path(f"workload:{workload}")  # type: ignore[attr-defined]
        return str(path.read_text(errors="replace")) if path.exists() else ""
    from spire_fabric.render.kubernetes import selector_labels
    from spire_fabric.runtime.kubernetes._pods import running_pod

    k = d.topology.workload(workload).kubernetes
    assert k is not None
    conn = d.clusters[d.access.workload_cluster(workload)]  # type: ignore[attr-defined]
    pod = running_pod(conn, k.namespace, selector_labels(workload, "workload"))
    return str(conn.core.read_namespaced_pod_log(pod, k.namespace, container=workload))


def processor_cycles(log: str, after: int = 0) -> tuple[int, list[str]]:
    """data-processor's cycles numbered above ``after`` in its log: how many, and the
    failed ones (each with the error it logged). Each cycle is its own requests to
    enterprise-api (``GET /records``, and ``POST /results`` with a JWT-SVID when it found
    new records); a cycle fails at its first refused request."""
    cycles = [m for m in _CYCLE.finditer(log) if int(m.group(1)) > after]
    return len(cycles), [f"cycle {m.group(1)}{m.group(3)}" for m in cycles if m.group(2) != "ok"]


_CYCLE_MS = re.compile(r"\bms=([0-9.]+)")


def processor_cycle_work(log: str, after: int = 0) -> list[float]:
    """Seconds each good cycle numbered above ``after`` spent on its requests (its ``ms=``).

    A cycle is its interval's wait *plus* this work, so how many cycles fit in a drill
    depends on it: under load the work adds up to several intervals over a long drill."""
    return [float(w.group(1)) / 1000 for m in _CYCLE.finditer(log)
            if int(m.group(1)) > after and m.group(2) == "ok"
            and (w := _CYCLE_MS.search(m.group(3)))]  # fmt: skip


def last_cycle(log: str) -> int:
    """The number of data-processor's last logged cycle (0: none yet)."""
    return max((int(m.group(1)) for m in _CYCLE.finditer(log)), default=0)
