"""The helper's Prometheus metrics, served as ``GET /metrics`` on its health port.

What an operator of a files-mode sidecar needs to alert on is whether the files keep up
with the agent: seconds until the SVID in them expires (and the lifetime it was issued
with, so "less than a third left" is one expression, as for the examples), serial changes
written (rotations that reached the files), file writes, and reload signals delivered to
the program. Read from ``HelperState`` at scrape time by a collector on the helper's own
registry (not the library's global one), rendered by ``prometheus_client`` through
:class:`spire_fabric.metrics.CachedExposition`: at most once per second however often it
is asked for (the health port's connection cap bounds the rest). No label at all: one
helper serves one workload, which Prometheus' target labels name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from spire_fabric.metrics import CONTENT_TYPE, METRICS_PATH, CachedExposition

__all__ = ["METRICS_CONTENT_TYPE", "METRICS_PATH", "PREFIX", "HelperCounts", "HelperMetrics"]

PREFIX = "spire_fabric_helper"
METRICS_CONTENT_TYPE = CONTENT_TYPE
MIN_RENDER_INTERVAL_S = 1.0


@dataclass(frozen=True)
class HelperCounts:
    """What the metrics show, read from ``HelperState`` at each scrape."""

    x509_expiry: dt.datetime | None
    lifetime_s: float | None
    serial_changes: int
    writes: int
    signals: int


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], HelperCounts]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        s = self._read()
        if s.x509_expiry is not None:  # nothing written yet: the series are absent
            left = (s.x509_expiry - dt.datetime.now(dt.timezone.utc)).total_seconds()
            yield GaugeMetricFamily(f"{PREFIX}_svid_expiry_seconds",
                                    "Seconds until the X509-SVID in the files expires.",
                                    value=left)  # fmt: skip
        if s.lifetime_s is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_svid_lifetime_seconds",
                "Lifetime (notAfter - notBefore) of the X509-SVID in the files: its TTL.",
                value=s.lifetime_s,
            )
        counters = (
            ("svid_serial_changes", "Changes of the written X509-SVID's serial (rotations "
             "that reached the files) since the helper started.", s.serial_changes),
            ("file_writes", "X.509 updates that changed the files on disk.", s.writes),
            ("reload_signals", "Signals delivered to the program after a write.", s.signals),
        )  # fmt: skip
        for name, text, value in counters:
            yield CounterMetricFamily(f"{PREFIX}_{name}", text, value=value)


class HelperMetrics:
    """The rendered text of the metrics ``read`` gives, reused for a second between renders."""

    def __init__(self, read: Callable[[], HelperCounts]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(read))
        self._exposition = CachedExposition(self.registry, MIN_RENDER_INTERVAL_S)

    def get(self) -> bytes:
        return self._exposition.get()
