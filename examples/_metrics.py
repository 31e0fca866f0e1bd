"""Prometheus metrics of the three examples, one module for all of them.

What an operator alerts on (docs/monitoring.md): requests by route and status, latency,
authorization decisions by reason, rate-limited requests, and the workload's own SVID
(seconds until it expires, its lifetime, serial changes seen). The text format comes from
``prometheus_client`` (the maintained client library), never from our own formatting.

Built for the same hostile clients as every server here:

- **bounded series.** Every label value comes from a fixed set given at construction (the
  service's route names, its reason words) or from the status codes 100..599; anything
  else is counted as ``other``. A client choosing paths or reasons cannot grow the output.
- **no leak.** No path, client name, SPIFFE ID, key id or free-text reason is a label; the
  registry is the service's own (not the library's global one), with only the process
  collector added (CPU, memory, open files); no platform or interpreter details.
- **no amplification.** ``serve_metrics`` is plain HTTP on a separate listener (loopback by
  default, like SPIRE's own telemetry port), GET /metrics only, no request body, a few
  connections at once, and the text is rendered at most once per ``min_interval`` however
  often it is asked for: the CPU a scraper can take is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from spire_fabric.identity import X509Svid
from spire_fabric.metrics import CONTENT_TYPE, METRICS_PATH, CachedExposition

from ._http import JsonHandler, Limits, PlainHttpServer

__all__ = ["METRICS_PATH", "OTHER", "Metrics", "serve_metrics"]

PREFIX = "spire_fabric_example"
OTHER = "other"
# Latency buckets from 1 ms (a pooled local call) to 10 s (the examples' own deadlines).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_SCRAPE_CONNECTIONS = 4


class _SvidSource(Protocol):
    """What the SVID collector reads: an X509Source (or anything with its getter)."""

    def get_x509_svid(self) -> X509Svid: ...


class _SvidCollector(Collector):
    """The workload's current X509-SVID at scrape time: seconds left, its lifetime, and how
    many times its serial changed since the process started (rotations seen)."""

    def __init__(self, source: _SvidSource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._serial: int | None = None
        self._changes = 0

    def collect(self) -> Iterator[Metric]:
        try:
            leaf = self._source.get_x509_svid().leaf
        except Exception:  # no SVID right now (a closed source): the series go absent
            return
        with self._lock:
            if self._serial is not None and leaf.serial_number != self._serial:
                self._changes += 1
            self._serial = leaf.serial_number
            changes = self._changes
        not_after = leaf.not_valid_after_utc.timestamp()
        lifetime = not_after - leaf.not_valid_before_utc.timestamp()
        yield GaugeMetricFamily(
            f"{PREFIX}_svid_expiry_seconds",
            "Seconds until this workload's current X509-SVID expires.",
            value=not_after - time.time(),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_svid_lifetime_seconds",
            "Lifetime (notAfter - notBefore) of the current X509-SVID: the TTL it was issued with.",
            value=lifetime,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_svid_serial_changes",
            "Changes of the X509-SVID serial seen (at scrapes) since the process started.",
            value=changes,
        )


class Metrics:
    """One service's metrics. ``routes`` and ``reasons`` are every label value the service
    may use (anything else becomes ``other``), so the output is bounded by construction."""

    def __init__(self, routes: Iterable[str], reasons: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.routes = frozenset(routes) | {OTHER}
        self.reasons = frozenset(reasons) | {OTHER}
        self._requests = Counter(
            f"{PREFIX}_requests",
            "Requests answered, by route name and HTTP status.",
            ["route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from the request head to the answer, by route name.",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._decisions = Counter(
            f"{PREFIX}_authorization_decisions",
            "Authorization decisions: allow or deny, by reason.",
            ["decision", "reason"],
            registry=self.registry,
        )
        self._rate_limited = Counter(
            f"{PREFIX}_rate_limited_requests",
            "Requests refused because their client was over its rate.",
            registry=self.registry,
        )
        self._svid: _SvidCollector | None = None

    def _route(self, route: str | None) -> str:
        return route if route in self.routes else OTHER

    def request(self, route: str | None, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        label = self._route(route)
        code = str(status) if 100 <= status <= 599 else OTHER
        self._requests.labels(label, code).inc()
        self._latency.labels(label).observe(max(0.0, seconds))

    def decision(self, allowed: bool, reason: str) -> None:
        """Count one authorization decision; ``reason`` is one of the constructor's words."""
        why = reason if reason in self.reasons else OTHER
        self._decisions.labels("allow" if allowed else "deny", why).inc()

    def rate_limited(self) -> None:
        self._rate_limited.inc()

    def watch_svid(self, source: _SvidSource) -> None:
        """Report ``source``'s current X509-SVID at every scrape (once per Metrics)."""
        if self._svid is not None:
            raise RuntimeError("watch_svid: this Metrics already reports an SVID")
        self._svid = _SvidCollector(source)
        self.registry.register(self._svid)

    def render(self) -> bytes:
        """The Prometheus text format of every metric (what /metrics answers)."""
        return generate_latest(self.registry)


def serve_metrics(
    metrics: Metrics, address: tuple[str, int], *, min_interval: float = 1.0
) -> PlainHttpServer:
    """Serve ``GET /metrics`` in a background thread on ``address`` (plain HTTP: put it on
    loopback or a network only the scraper reaches, as SPIRE's telemetry port)."""
    rendered = CachedExposition(metrics.registry, min_interval)

    class MetricsHandler(JsonHandler):
        server_version = "metrics"
        limits = Limits(max_header_bytes=4096, header_timeout=5.0, max_body=0)

        def do_GET(self) -> None:
            if self.path != METRICS_PATH:
                self.reply(404, {"error": "not found", "reason": f"only {METRICS_PATH} is here"})
                return
            self.reply(200, None, raw=rendered.get(), content_type=CONTENT_TYPE)

    return PlainHttpServer(MetricsHandler, address, MAX_SCRAPE_CONNECTIONS)
