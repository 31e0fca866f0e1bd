"""CachedExposition: what a stranger's scrape costs is bounded by the interval, not the rate."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from spire_fabric.metrics import CachedExposition


def _value(text: bytes) -> float:
    (family,) = [f for f in text_string_to_metric_families(text.decode()) if f.name == "hits"]
    return next(s.value for s in family.samples if s.name == "hits_total")


def test_renders_once_per_interval_and_serves_the_same_bytes_between() -> None:
    registry = CollectorRegistry()
    hits = Counter("hits", "test counter", registry=registry)
    cached = CachedExposition(registry, min_interval=3600)
    first = cached.get()
    hits.inc()
    assert cached.get() is first  # not rendered again within the interval
    assert _value(first) == 0


def test_a_zero_interval_renders_every_time() -> None:
    registry = CollectorRegistry()
    hits = Counter("hits", "test counter", registry=registry)
    cached = CachedExposition(registry, min_interval=0)
    assert _value(cached.get()) == 0
    hits.inc()
    assert _value(cached.get()) == 1


def test_a_negative_interval_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match="min_interval must be >= 0 seconds, got -1"):
        CachedExposition(CollectorRegistry(), min_interval=-1)
