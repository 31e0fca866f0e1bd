"""Reading a deployment's Prometheus and Alertmanager through their HTTP APIs.

Written once for every reader (`verify`, `deploy status`, the dashboard, the tests), against
the URLs a deployment gives (``Deployment.monitoring_urls``). Plain ``http.client``, so no
proxy setting redirects a loopback call; answers are bounded (``MAX_ANSWER``) and parsed as
the documented JSON of Prometheus' ``/api/v1`` and Alertmanager's ``/api/v2``.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from spire_fabric.errors import SpireFabricError

__all__ = [
    "Alert",
    "MonitoringError",
    "ScrapeTarget",
    "Series",
    "active_alerts",
    "federated_up",
    "loaded_alert_rules",
    "query_range",
    "scrape_targets",
]

MAX_ANSWER = 8 * 1024 * 1024


class MonitoringError(SpireFabricError):
    """Prometheus or Alertmanager did not answer as documented; the message says which."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One target of Prometheus' ``/api/v1/targets``: ``health`` is up, down or unknown."""

    job: str
    component: str
    url: str
    health: str
    last_error: str


@dataclass(frozen=True)
class Alert:
    """One alert Alertmanager holds: ``state`` is active, suppressed or unprocessed."""

    name: str
    component: str
    summary: str
    severity: str
    state: str
    starts_at: str


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and (unix time, value) points."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


def _get(base: str, path: str, params: dict[str, str] | None = None, timeout: float = 5.0) -> Any:
    parts = urlsplit(base)
    if parts.scheme != "http" or parts.hostname is None:
        raise MonitoringError(f"{base}: expected an http://HOST:PORT URL")
    target = path + (f"?{urlencode(params)}" if params else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        body = response.read(MAX_ANSWER + 1)
    except OSError as err:
        raise MonitoringError(f"{base}{path}: {err}") from None
    finally:
        conn.close()
    if len(body) > MAX_ANSWER:
        raise MonitoringError(f"{base}{path}: answer over {MAX_ANSWER} bytes")
    if response.status != 200:
        raise MonitoringError(f"{base}{path}: HTTP {response.status}: {body[:200]!r}")
    try:
        return json.loads(body)
    except ValueError as err:
        raise MonitoringError(f"{base}{path}: not JSON: {err}") from None


def _data(answer: Any, where: str) -> Any:
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise MonitoringError(
            f"{where}: {answer.get('error') if isinstance(answer, dict) else answer}"
        )
    return answer.get("data")


def scrape_targets(prometheus: str) -> list[ScrapeTarget]:
    """Prometheus' active scrape targets, in its order."""
    data = _data(_get(prometheus, "/api/v1/targets", {"state": "active"}), "targets")
    out = []
    for t in data.get("activeTargets", []):
        labels = t.get("labels", {})
        out.append(
            ScrapeTarget(
                job=labels.get("job", ""),
                component=labels.get("component", labels.get("instance", "")),
                url=t.get("scrapeUrl", ""),
                health=t.get("health", "unknown"),
                last_error=t.get("lastError", ""),
            )
        )
    return out


def loaded_alert_rules(prometheus: str) -> list[str]:
    """The names of the alerting rules Prometheus evaluates."""
    data = _data(_get(prometheus, "/api/v1/rules", {"type": "alert"}), "rules")
    return [r["name"] for g in data.get("groups", []) for r in g.get("rules", [])]


def active_alerts(alertmanager: str) -> list[Alert]:
    """The alerts Alertmanager holds as firing (resolved ones are not listed)."""
    answer = _get(alertmanager, "/api/v2/alerts", {"active": "true", "silenced": "false",
                                                    "inhibited": "false"})  # fmt: skip
    if not isinstance(answer, list):
        raise MonitoringError(f"{alertmanager}/api/v2/alerts: expected a list")
    out = []
    for a in answer:
        labels, annotations = a.get("labels", {}), a.get("annotations", {})
        out.append(
            Alert(
                name=labels.get("alertname", "?"),
                component=labels.get("component", ""),
                summary=annotations.get("summary", ""),
                severity=labels.get("severity", ""),
                state=a.get("status", {}).get("state", ""),
                starts_at=a.get("startsAt", ""),
            )
        )
    return sorted(out, key=lambda a: (a.name, a.component))


def query_range(prometheus: str, query: str, start: float, end: float, step: float) -> list[Series]:
    """A PromQL range query (``/api/v1/query_range``): one Series per result."""
    params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    data = _data(_get(prometheus, "/api/v1/query_range", params), "query_range")
    out = []
    for r in data.get("result", []):
        points = tuple((float(t), float(v)) for t, v in r.get("values", []))
        out.append(Series(dict(r.get("metric", {})), points))
    return out


def federated_up(prometheus: str) -> dict[str, float]:
    """component -> value of the ``up`` series Prometheus holds for targets another
    Prometheus scraped (federated, so not among its own targets; Kubernetes: the other
    clusters'). The lowest value per component: one down pod makes it down."""
    data = _data(_get(prometheus, "/api/v1/query", {"query": 'up{job=~"spire-.+|workload"}'}),
                 "query")  # fmt: skip
    out: dict[str, float] = {}
    for r in data.get("result", []):
        component = r.get("metric", {}).get("component")
        if component:
            value = float(r.get("value", [0, "0"])[1])
            out[component] = min(value, out.get(component, value))
    return out
