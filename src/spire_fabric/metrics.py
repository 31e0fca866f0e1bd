"""Serving a ``prometheus_client`` registry to Prometheus from a service that faces strangers.

Why this exists: ``generate_latest`` walks every collector on each call, and a collector
that reads an SVID or a file costs real CPU. A port that anyone on the network can ask for
``/metrics`` as fast as it likes would turn that into a CPU lever. :class:`CachedExposition`
renders at most once per ``min_interval`` and hands every other scraper the same bytes, so
the cost per second is bounded whatever the request rate; the server's connection cap
bounds the rest. The examples, the gateway and ``python -m spire_fabric.helper`` all serve
their metrics through it.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, generate_latest

__all__ = ["CONTENT_TYPE", "METRICS_PATH", "CachedExposition"]

METRICS_PATH = "/metrics"
# The text format Prometheus 2.x reads (Debian bookworm's is 2.42). generate_latest writes
# it for plain-ASCII names, whatever the library's newest content type is.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class CachedExposition:
    """The text exposition of ``registry``, rendered at most once per ``min_interval`` s."""

    def __init__(self, registry: CollectorRegistry, min_interval: float = 1.0) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval}")
        self.registry = registry
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._text = b""

    def get(self) -> bytes:
        """The last rendering, or a new one if it is older than ``min_interval``."""
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.min_interval:
                self._text, self._at = generate_latest(self.registry), now
            return self._text
