"""The dashboard's ASGI app: Starlette routes, Jinja2 templates, one inline-free script.

Why this stack: Starlette is a small, well-kept ASGI toolkit (the base of FastAPI) whose
routing, responses and test client we need and nothing more; uvicorn is its standard
server; Jinja2 renders server-side templates with **autoescaping on for every template**,
so a value (an entry's hint, a DNS name, a selector) reaches the page as text unless this
code marks it safe, and the only values marked safe come from ``spire_fabric._html`` and
the topology diagram of ``spire_fabric.render`` (built with ``_html``), which escape
everything they are given. No HTTP is parsed by hand.

Defence in depth: a Content-Security-Policy allows scripts only from this origin (the
refresh script is a static file, not inline), so even an unescaped ``<script>`` would not
run; every route is GET (read-only); nothing reaches a shell or a query language: entry
search is a substring match in Python over entries already fetched, and the entries page
shows one page of the matches (``?q=…&p=N``), cut on the server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from spire_fabric import _html
from spire_fabric.render import render_topology_svg
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.runtime.monitoring import (
    Alert,
    MonitoringError,
    Series,
    active_alerts,
    query_range,
)
from spire_fabric.verify import AuthoritiesReport, authorities_report, authority_checks

from ._collect import Snapshot, collect, metric

__all__ = ["LOOPBACK_HOSTS", "PAGES", "create_app"]

PAGES = (
    "overview", "servers", "authorities", "agents", "entries", "federation", "workloads",
    "metrics",
)  # fmt: skip
AUTHORITIES_INTERVAL = 5.0
"""How long one authorities report is shown before it is gathered again: it asks every
workload's agent for SVIDs and every peer for its copy, too much for each refresh."""
HISTORY = 240  # samples kept per series for the charts
# With the deployment's Prometheus, the charts are range queries over the last hour (title,
# PromQL, unit); each series is named by its target's `component` label.
PROMETHEUS_WINDOW = 3600.0
PROMETHEUS_STEP = 30.0
PROMETHEUS_CHARTS = (
    ("X.509-SVIDs signed per second", "sum by (component) "
     "(rate(spire_server_server_ca_sign_x509_svid[1m]))", "/s"),
    ("JWT-SVIDs signed per second", "sum by (component) "
     "(rate(spire_server_server_ca_sign_jwt_svid[1m]))", "/s"),
    ("agent sync latency, mean ms", "1000 * sum by (component) (rate("
     "spire_agent_manager_sync_fetch_entries_updates_elapsed_time_sum[1m])) / sum by "
     "(component) (rate(spire_agent_manager_sync_fetch_entries_updates_elapsed_time_count[1m]))",
     "ms"),
    ("workload requests per second", "sum by (component) "
     "(rate(spire_fabric_example_requests_total[1m]))", "/s"),
    ("workload SVID, hours until expiry", "spire_fabric_example_svid_expiry_seconds / 3600",
     "h"),
    ("targets up, by job", "sum by (job) (up)", ""),
)  # fmt: skip
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""The Host names a loopback-bound dashboard answers to (and the default of create_app)."""
_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Callable[..., Any]) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response


class _State:
    """The latest snapshot (at most one collection at a time) and the metric history."""

    def __init__(self, open_deployment: Callable[[], Deployment], min_interval: float) -> None:
        self._open = open_deployment
        self._deployment: Deployment | None = None
        self._lock = threading.Lock()
        self._min_interval = min_interval
        self.snapshot: Snapshot | None = None
        self.generation = 0
        self.history: dict[str, dict[str, deque[tuple[float, float]]]] = {}
        self._fetch_totals: dict[tuple[str, str], float] = {}
        self._fetch_seen: dict[tuple[str, str], float] = {}
        self._authorities: tuple[float, AuthoritiesReport | str] | None = None
        self._monitoring: tuple[float, Monitored | None] | None = None

    def authorities(self) -> AuthoritiesReport | str:
        """The latest authorities report (the one verify's authority checks judge), or why
        it could not be gathered; at most one every AUTHORITIES_INTERVAL seconds."""
        with self._lock:
            now = time.time()
            if self._authorities is not None and now - self._authorities[0] < AUTHORITIES_INTERVAL:
                return self._authorities[1]
            if self._deployment is None:
                self._deployment = self._open()
            report: AuthoritiesReport | str
            try:
                report = authorities_report(self._deployment)
            except Exception as e:  # the page says so instead of failing
                report = f"{type(e).__name__}: {e}"
            self._authorities = (now, report)
            return report

    def monitoring(self) -> Monitored | None:
        """The last hour of the charts from the deployment's Prometheus and the alerts
        firing in its Alertmanager; None when the deployment runs no monitoring. At most
        one gathering every ``min_interval`` seconds."""
        with self._lock:
            now = time.time()
            if self._monitoring is not None and now - self._monitoring[0] < self._min_interval:
                return self._monitoring[1]
            if self._deployment is None:
                self._deployment = self._open()
            urls = self._deployment.monitoring_urls()
            result = None if urls is None else _gather(urls[0], urls[1], now)
            self._monitoring = (now, result)
            return result

    def fresh(self) -> Snapshot:
        with self._lock:
            now = time.time()
            if self.snapshot is not None and now - self.snapshot.taken_at < self._min_interval:
                return self.snapshot
            if self._deployment is None:
                self._deployment = self._open()
            self.generation += 1
            snapshot = collect(self._deployment, self.generation)
            self._record(snapshot)
            self.snapshot = snapshot
            return snapshot

    def _point(self, chart: str, series: str, t: float, value: float | None) -> None:
        if value is None:
            return
        self.history.setdefault(chart, {}).setdefault(series, deque(maxlen=HISTORY)).append(
            (t, value)
        )

    def _record(self, s: Snapshot) -> None:
        t = s.taken_at
        for f in s.federation:
            key, total = (f.server, f.trust_domain), sum(f.fetches.values())
            previous = self._fetch_totals.get(key)
            if previous is not None and total > previous:
                self._fetch_seen[key] = t
            self._fetch_totals[key] = total
            f.last_fetch_seen = self._fetch_seen.get(key)
        for server in s.servers:
            x509 = metric(s, server.name, "spire_server_server_ca_sign_x509_svid")
            jwt = metric(s, server.name, "spire_server_server_ca_sign_jwt_svid")
            self._point("X.509-SVIDs signed (SPIRE telemetry)", server.name, t, x509)
            self._point("JWT-SVIDs signed (SPIRE telemetry)", server.name, t, jwt)
            entries = None if server.info is None else float(server.info.entries_count)
            self._point("registration entries (Server API)", server.name, t, entries)
        for agent in s.topology.agents:
            name = "spire_agent_manager_sync_fetch_entries_updates_elapsed_time"
            elapsed = metric(s, agent.name, f"{name}_sum")
            count = metric(s, agent.name, f"{name}_count")
            mean_ms = None if not count or elapsed is None else elapsed / count
            self._point("agent sync latency, mean ms (SPIRE telemetry)", agent.name, t, mean_ms)


class Monitored:
    """What the dashboard shows from Prometheus and Alertmanager, or why it cannot."""

    def __init__(self, prometheus: str, alertmanager: str) -> None:
        self.prometheus, self.alertmanager = prometheus, alertmanager
        self.charts: list[tuple[str, list[Series], str]] = []
        self.alerts: list[Alert] = []
        self.errors: list[str] = []


def _gather(prometheus: str, alertmanager: str, now: float) -> Monitored:
    out = Monitored(prometheus, alertmanager)
    for title, query, unit in PROMETHEUS_CHARTS:
        try:
            series = query_range(prometheus, query, now - PROMETHEUS_WINDOW, now, PROMETHEUS_STEP)
        except MonitoringError as err:
            out.errors.append(str(err))
            break
        out.charts.append((title, series, unit))
    try:
        out.alerts = active_alerts(alertmanager)
    except MonitoringError as err:
        out.errors.append(str(err))
    return out


def _series_name(s: Series) -> str:
    return s.labels.get("component") or s.labels.get("job") or "value"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("spire_fabric.dashboard", "templates"),
        autoescape=True,  # every template, whatever its file name
    )
    env.globals.update(
        timestamp=_html.timestamp,
        time_left=_html.time_left,
        duration=_html.duration,
        fingerprint=_html.fingerprint,
        subject=_html.subject,
        name_constraints=_html.name_constraints,
    )
    return env


ENTRIES_PER_PAGE = 100


def _entries_page(snapshot: Snapshot, query: str, page: str) -> dict[str, Any]:
    """One page of the entries that match ``query``, searched and cut here on the server.

    Why: a page of 50k rows took the browser seconds to lay out and re-rendered at every
    refresh; a page of 100 rows costs the same at any size, and the search runs over the
    snapshot the server already holds (no SPIRE call per request). A page number that is
    not one, or is past the end, shows the nearest page.
    """
    matched = [(srv, e) for srv, e in snapshot.entries if _matches(e, srv, query)]
    pages = max(1, -(-len(matched) // ENTRIES_PER_PAGE))
    number = min(max(int(page), 1), pages) if page.isdigit() and len(page) < 8 else 1
    start = (number - 1) * ENTRIES_PER_PAGE
    return {
        "entries": matched[start : start + ENTRIES_PER_PAGE],
        "matched": len(matched),
        "page_no": number,
        "page_count": pages,
        "first": start + 1 if matched else 0,
        "last": min(start + ENTRIES_PER_PAGE, len(matched)),
    }


def _matches(entry: Any, server: str, query: str) -> bool:
    if not query:
        return True
    haystack = [
        server,
        str(entry.spiffe_id),
        str(entry.parent_id),
        entry.hint,
        entry.id,
        *(str(s) for s in entry.selectors),
        *entry.dns_names,
        *(td.name for td in entry.federates_with),
    ]
    q = query.lower()
    return any(q in h.lower() for h in haystack)


def create_app(
    deployment: Deployment | Callable[[], Deployment],
    *,
    refresh: float = 5.0,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> Starlette:
    """The dashboard of ``deployment`` (or of what a callable returns, opened on first use).

    ``refresh`` is the page's auto-refresh period in seconds; a snapshot is shared by the
    requests of one refresh so several open pages do not multiply the load on SPIRE.

    ``allowed_hosts`` are the only ``Host`` header names answered (any port; IPv6 literals
    in brackets); any other gets 400. Why: without it a web page the user visits could
    point its own DNS name at 127.0.0.1 (DNS rebinding) and read the dashboard with the
    browser's same-origin blessing; the rebound request still carries the attacker's name
    in ``Host``. Starlette's TrustedHostMiddleware does the check, before any route runs.
    """
    if not allowed_hosts or "*" in allowed_hosts:
        raise ValueError("allowed_hosts must name the hosts the dashboard is reached by")
    opener = deployment if callable(deployment) else (lambda: deployment)
    state = _State(opener, min_interval=min(1.0, refresh / 2))
    env = _environment()

    def context(page: str, request: Request, snapshot: Snapshot) -> dict[str, Any]:
        query = request.query_params.get("q", "")[:200]
        ctx: dict[str, Any] = {
            "page": page,
            "pages": PAGES,
            "s": snapshot,
            "refresh": refresh,
            "query": query,
            "health": snapshot.health(),
        }
        if page == "overview":
            ctx["diagram"] = Markup(render_topology_svg(snapshot.topology, snapshot.health()))
        if page == "entries":
            ctx.update(_entries_page(snapshot, query, request.query_params.get("p", "1")))
        if page == "metrics":
            ctx["charts"] = [
                Markup(_html.line_chart(title, {k: list(v) for k, v in series.items()}))
                for title, series in state.history.items()
            ]
        return ctx

    async def snapshot() -> Snapshot:
        return await asyncio.to_thread(state.fresh)

    def page_endpoint(page: str, fragment: bool) -> Callable[[Request], Any]:
        template = f"{page}.html"

        async def endpoint(request: Request) -> HTMLResponse:
            snap = await snapshot()
            ctx = context(page, request, snap)
            monitored = await asyncio.to_thread(state.monitoring)
            ctx["monitored"] = monitored
            if page == "metrics" and monitored is not None and monitored.charts:
                ctx["charts"] = [
                    Markup(_html.line_chart(f"{title} (Prometheus, last hour)",
                                            {_series_name(s): list(s.points) for s in series},
                                            unit))
                    for title, series, unit in monitored.charts
                ]  # fmt: skip
            if page == "authorities":
                report = await asyncio.to_thread(state.authorities)
                ctx["report"] = report if isinstance(report, AuthoritiesReport) else None
                ctx["report_error"] = report if isinstance(report, str) else ""
                ctx["checks"] = (
                    authority_checks(report, snap.topology)
                    if isinstance(report, AuthoritiesReport) else []
                )  # fmt: skip
            body = env.get_template(template).render(ctx)
            if not fragment:
                body = env.get_template("base.html").render(ctx, content=Markup(body))
            return HTMLResponse(body)

        return endpoint

    async def summary(request: Request) -> JSONResponse:
        """The numbers the pages show, as JSON (for scripts and the browser tests)."""
        snap = await snapshot()
        return JSONResponse(
            {
                "generation": snap.generation,
                "taken_at": snap.taken_at,
                "health": snap.health(),
                "agents": len(snap.agents),
                "entries": len(snap.entries),
            }
        )

    routes: list[Any] = [
        Route("/", page_endpoint("overview", False)),
        Route("/fragment/", page_endpoint("overview", True)),
        Route("/api/summary.json", summary),
        Mount(
            "/static",
            StaticFiles(directory=str(resources.files("spire_fabric.dashboard") / "static")),
            name="static",
        ),
    ]
    for page in PAGES[1:]:
        routes.append(Route(f"/{page}", page_endpoint(page, False)))
        routes.append(Route(f"/fragment/{page}", page_endpoint(page, True)))
    middleware = [  # outermost first: the 400 for a foreign Host gets the headers too
        Middleware(_SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False),
    ]
    return Starlette(routes=routes, middleware=middleware)
