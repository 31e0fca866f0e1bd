"""Continuous traffic through an enterprise deployment, counted, for the key-compromise
drill on either target: every request made while authorities rotate and are revoked is
counted, and every failure is kept with its reason, so "0 failed requests" can be asserted
and, when it is not true, explained.

Why these four streams (issue 22, item 4): each crosses a different trust decision that a
rotation can break.

- ``gateway-apikey``: an external client (no SPIFFE identity) → security-gateway, which
  it verifies against the Enterprise Root; the gateway forwards to enterprise-api with its
  own rotating X.509-SVID (downstream mTLS). Some of its requests create records, so
  data-processor has something to post.
- ``upstream-x509``: a SPIFFE client of ``enterprise-root.org`` (upstream-client's
  X.509-SVID) → the gateway over mTLS: cross-domain X.509 validation, both ways.
- ``upstream-jwt``: upstream-client's JWT-SVID for the gateway's audience → the gateway,
  which validates it against its federated copy of enterprise-root.org's JWT keys.
- ``data-processor``: the running data-processor posting results to enterprise-api with a
  JWT-SVID (and its X.509-SVID); counted from its own log lines (``event=cycle``), each
  cycle one request or two.

The SPIFFE client streams fetch their SVIDs through the `Deployment` interface before each
request (as a workload asks its agent at call time), so a credential is never older than
one request; on Kubernetes that fetch is a probe pod of upstream-client's service account,
which makes these streams slow (seconds per request) but real.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from spire_fabric.identity import SpiffeId
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.tls import authorize_id, mtls_client_context, mtls_urlopen

GATEWAY = "security-gateway"
UPSTREAM_CLIENT = "upstream-client"
DATA_PROCESSOR = "data-processor"
_CYCLE = re.compile(r"event=cycle cycle=(\d+) outcome=(\S+)(?: new_records=(\d+))?(.*)")


@dataclass
class Stream:
    """One kind of request: how many were made, and each failure's reason."""

    name: str
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, failure: str | None) -> None:
        with self.lock:
            self.requests += 1
            if failure is not None:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {failure}")


@dataclass(frozen=True)
class TrafficReport:
    """Requests and failures per stream (``failures``: the reasons, oldest first)."""

    requests: dict[str, int]
    failures: dict[str, list[str]]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def failed(self) -> int:
        return sum(len(f) for f in self.failures.values())

    def summary(self) -> str:
        reasons = Counter(r.split(" ", 1)[1][:160] for f in self.failures.values() for r in f)
        lines = [f"{self.total} requests in {self.seconds:.0f}s, {self.failed} failed"]
        lines += [f"  {n}: {self.requests[n]} requests, {len(self.failures[n])} failed"
                  for n in self.requests]  # fmt: skip
        lines += [f"  {count}x {reason}" for reason, count in reasons.most_common(10)]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "requests": self.requests,
                "failed": {n: len(f) for n, f in self.failures.items()},
                "failures": self.failures}  # fmt: skip


def issue_api_key(d: Deployment, state_dir: Path, client: str) -> str:
    """A gateway API key for ``client`` (GET and POST /records, rate high enough for the
    load), issued through the example's own CLI on the deployment's key file."""
    argv = [sys.executable, "-m", "spire_fabric.examples.security_gateway", "issue-key",
            "--state-dir", str(state_dir), "--client", client,
            "--route", "GET /records", "--route", "POST /records",
            "--rate", "200", "--burst", "400"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError(f"issue-key exited {out.returncode}: {out.stderr}")
    return out.stdout.strip()


class Traffic:
    """Starts the streams in threads (``start``), stops them and counts (``stop``).

    ``api_key`` must already be accepted by the gateway (a new key reaches a gateway on
    Kubernetes when the kubelet refreshes its Secret volume: :meth:`wait_key_accepted`)."""

    def __init__(
        self, d: Deployment, api_key: str, *, apikey_threads: int = 2, pause: float = 0.2,
        upstream_pause: float = 0.2, log_text: Callable[[], str] | None = None,
    ) -> None:  # fmt: skip
        self.d = d
        self.api_key = api_key
        self.apikey_threads = apikey_threads
        self.pause = pause
        self.upstream_pause = upstream_pause
        self.log_text = log_text or (lambda: workload_log(d, DATA_PROCESSOR))
        address = d.workload_address(GATEWAY)
        root = d.root_ca()
        assert address is not None and root is not None, "an enterprise deployment is needed"
        self.gateway_url = f"https://{address.host}:{address.port}"
        self.gateway_id = SpiffeId.parse(d.topology.workload(GATEWAY).spiffe_id)
        self.external = ssl.create_default_context(cadata=root.public_bytes(Encoding.PEM).decode())
        self.external.check_hostname = False  # the gateway's DNS SAN is its in-cluster name
        self.streams = {n: Stream(n) for n in ("gateway-apikey", "upstream-x509", "upstream-jwt")}
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.started = 0.0
        self.first_cycle = 0

    # ---- lifecycle -----------------------------------------------------------------------

    def wait_key_accepted(self, timeout: float = 150) -> float:
        """Seconds until the gateway takes the key (it re-reads its key file on change)."""
        started = time.monotonic()
        while self._apikey_get() is not None:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"the gateway never took the API key: {self._apikey_get()}")
            time.sleep(3)
        return time.monotonic() - started

    def start(self) -> None:
        self.first_cycle = _last_cycle(self.log_text())
        self.started = time.monotonic()
        for i in range(self.apikey_threads):
            self._spawn(f"apikey-{i}", self._apikey_loop)
        self._spawn("upstream", self._upstream_loop)

    def stop(self) -> TrafficReport:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=120)
            assert not t.is_alive(), f"traffic thread {t.name} did not stop"
        seconds = time.monotonic() - self.started
        requests = {n: s.requests for n, s in self.streams.items()}
        failures = {n: list(s.failures) for n, s in self.streams.items()}
        cycles, posts, failed = _cycles_after(self.log_text(), self.first_cycle)
        requests[DATA_PROCESSOR] = cycles + posts  # GET /records each cycle, POST /results
        failures[DATA_PROCESSOR] = failed
        return TrafficReport(requests, failures, seconds)

    def _spawn(self, name: str, loop: Callable[[], None]) -> None:
        t = threading.Thread(target=loop, name=f"traffic-{name}", daemon=True)
        t.start()
        self.threads.append(t)

    # ---- the streams ---------------------------------------------------------------------

    def bearer_refused(self, token: str) -> str | None:
        """None when the gateway answers ``GET /records`` with ``Bearer token``, else why
        not (the gateway's audit log has its own reason, the body only the status's)."""
        return self._call(self._request("GET", "/records", token), self.external)

    def _apikey_get(self) -> str | None:
        return self._call(self._request("GET", "/records", self.api_key), self.external)

    def _apikey_loop(self) -> None:
        s = self.streams["gateway-apikey"]
        n = 0
        while not self.stopping.is_set():
            n += 1
            if n % 10 == 0:  # new records give data-processor something to post
                body = json.dumps({"customer": f"drill-{n}", "region": "drill", "balance": 1})
                req = self._request("POST", "/records", self.api_key, body.encode())
                s.record(self._call(req, self.external, expect=201))
            else:
                s.record(self._apikey_get())
            self.stopping.wait(self.pause)

    def _upstream_loop(self) -> None:
        x509_stream, jwt_stream = self.streams["upstream-x509"], self.streams["upstream-jwt"]
        while not self.stopping.is_set():
            try:
                ctx = self.d.x509_context(UPSTREAM_CLIENT)
                svid = next(v for v in ctx.svids if str(v.spiffe_id).endswith("/upstream-client"))
                mtls = mtls_client_context(
                    svid, ctx.get_bundle_set(), authorize_id(self.gateway_id))  # fmt: skip
            except Exception as err:  # the harness could not get the identity: not a request
                x509_stream.record(f"no X.509-SVID for {UPSTREAM_CLIENT}: {_line(err)}")
            else:
                x509_stream.record(self._call(self._request("GET", "/records"), mtls, via=True))
            try:
                token = self.d.jwt_svid(UPSTREAM_CLIENT, str(self.gateway_id)).marshal()
            except Exception as err:
                jwt_stream.record(f"no JWT-SVID for {UPSTREAM_CLIENT}: {_line(err)}")
            else:
                jwt_stream.record(self.bearer_refused(token))
            self.stopping.wait(self.upstream_pause)

    # ---- one request ---------------------------------------------------------------------

    def _request(self, method: str, path: str, bearer: str | None = None,
                 body: bytes | None = None) -> urllib.request.Request:  # fmt: skip
        headers = {"Content-Type": "application/json"} if body else {}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return urllib.request.Request(f"{self.gateway_url}{path}", data=body, headers=headers,
                                      method=method)  # fmt: skip

    def _call(self, req: urllib.request.Request, context: ssl.SSLContext, *,
              expect: int = 200, via: bool = False) -> str | None:  # fmt: skip
        """None when the answer is ``expect``, else why not (status and body, or error)."""
        what = f"{req.get_method()} {req.full_url}"
        try:
            if via:
                resp = mtls_urlopen(req, context, timeout=15)  # type: ignore[arg-type]
            else:
                resp = urllib.request.urlopen(req, context=context, timeout=15)
            with resp:
                status = int(resp.status)
                body = resp.read()
        except urllib.error.HTTPError as err:
            status, body = int(err.code), err.read()
        except Exception as err:
            return f"{what}: {type(err).__name__}: {_line(err)}"
        if status != expect:
            return f"{what}: {status} {body[:200].decode(errors='replace')}"
        return None


# ---- data-processor's own count --------------------------------------------------------


def workload_log(d: Deployment, workload: str) -> str:
    """The workload's log as its target keeps it: locally its log file under the state
    directory, on Kubernetes its container's log in its running pod."""
    if d.target == "local":
        path = d.ctx.log_path(f"workload:{workload}")  # type: ignore[attr-defined]
        return str(path.read_text(errors="replace")) if path.exists() else ""
    from spire_fabric.render.kubernetes import selector_labels
    from spire_fabric.runtime.kubernetes._pods import running_pod

    w = d.topology.workload(workload)
    assert w.kubernetes is not None
    conn = d.clusters[d.access.workload_cluster(workload)]  # type: ignore[attr-defined]
    pod = running_pod(conn, w.kubernetes.namespace, selector_labels(workload, "workload"))
    return str(conn.core.read_namespaced_pod_log(pod, w.kubernetes.namespace, container=workload))


def _last_cycle(log: str) -> int:
    numbers = [int(m.group(1)) for m in _CYCLE.finditer(log)]
    return max(numbers, default=0)


def _cycles_after(log: str, first: int) -> tuple[int, int, list[str]]:
    """(cycles, results posted, failures with their reasons) of data-processor after cycle
    ``first`` (a failed cycle is one failed request: it stops at its first error)."""
    cycles, posts, failed = 0, 0, []
    for m in _CYCLE.finditer(log):
        if int(m.group(1)) <= first:
            continue
        cycles += 1
        if m.group(2) != "ok":
            failed.append(f"cycle {m.group(1)} {m.group(2)}{m.group(4)}")
        elif int(m.group(3) or 0) > 0:
            posts += 1
    return cycles, posts, failed


def _line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
