"""Reading SPIRE's own Prometheus telemetry (the ``telemetry { Prometheus {...} }`` listener
the renderers configure) — the dashboard's metrics are these numbers, nothing invented.

A small parser of the Prometheus text exposition format is enough here: SPIRE serves plain
``name{label="value",...} number`` lines; comments and ``NaN`` quantiles are skipped.
"""

from __future__ import annotations

import http.client
import math
import re
from dataclasses import dataclass

__all__ = ["Sample", "fetch_samples", "parse_samples", "value_of"]

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


def parse_samples(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        samples.append(Sample(m.group(1), labels, value))
    return samples


def fetch_samples(host: str, port: int, timeout: float = 2.0) -> list[Sample]:
    """GET the telemetry listener directly (http.client: no proxy settings apply)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        if response.status != 200:
            raise OSError(f"telemetry at {host}:{port} answered HTTP {response.status}")
        return parse_samples(body)
    finally:
        conn.close()


def value_of(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The sum of every sample of ``name`` whose labels include ``labels`` (None if none)."""
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.label(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None
