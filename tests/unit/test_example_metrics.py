"""The examples' /metrics (examples/_metrics.py): what each service counts, that hostile
clients cannot grow or leak through it, and that scrapes cost bounded CPU."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from spire_fabric.examples._http import ConnectionPool, JsonHandler, PlainHttpServer
from spire_fabric.examples._metrics import MAX_SCRAPE_CONNECTIONS, Metrics, serve_metrics
from spire_fabric.examples.data_processor.__main__ import CALLS, processor_metrics
from spire_fabric.examples.enterprise_api.service import api_metrics
from spire_fabric.examples.security_gateway.clients import ApiKeys, RateLimiter, issue_key
from spire_fabric.examples.security_gateway.guard import FailureThrottle, LineBudget
from spire_fabric.examples.security_gateway.service import Policy, gateway_metrics, make_handler

from spire_fabric.testing.pki import MutableSvidSource, make_ca, make_svid


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the rendered text, parsed by the client library's own parser."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


P = "spire_fabric_example"


class Api(JsonHandler):
    """Stands in for enterprise-api behind the gateway."""

    def do_GET(self) -> None:
        self.reply(200, {"path": self.path})


def test_requests_are_counted_by_route_and_status_with_latency() -> None:
    m = Metrics(routes=["records.list"])
    m.request("records.list", 200, 0.003)
    m.request("records.list", 200, 0.2)
    m.request("records.list", 503, 0.001)
    assert value(m, f"{P}_requests_total", route="records.list", status="200") == 2
    assert value(m, f"{P}_requests_total", route="records.list", status="503") == 1
    assert value(m, f"{P}_request_duration_seconds_count", route="records.list") == 3
    assert value(m, f"{P}_request_duration_seconds_bucket", route="records.list", le="0.005") == 2


def test_hostile_label_values_collapse_to_other_so_the_output_is_bounded() -> None:
    m = Metrics(routes=["health"], reasons=["role"])
    m.request("health", 200, 0.001)
    m.decision(False, "role")
    size = len(m.render())
    for i in range(500):  # what a client controls: paths, odd statuses, reasons
        m.request(f"/x/{i}/../\x1b[31m", 1000 + i, 0.001)
        m.decision(False, f"spiffe://evil/{i} does not hold role")
    text = m.render().decode()
    assert "/x/" not in text and "evil" not in text and "\x1b" not in text
    assert value(m, f"{P}_requests_total", route="other", status="other") == 500
    assert value(m, f"{P}_authorization_decisions_total", decision="deny", reason="other") == 500
    # only the new 'other' series were added, whatever the number of distinct values
    assert len(m.render()) - size < 3000


def test_svid_expiry_lifetime_and_serial_changes_follow_the_source() -> None:
    ca = make_ca("example.org")
    source = MutableSvidSource(make_svid(ca, "spiffe://example.org/w", ttl=timedelta(hours=1)))
    m = Metrics(routes=[])
    m.watch_svid(source)
    left = value(m, f"{P}_svid_expiry_seconds")
    assert 3590 < left <= 3600
    # make_svid backdates notBefore by 5 minutes
    assert value(m, f"{P}_svid_lifetime_seconds") == pytest.approx(3900, abs=2)
    assert value(m, f"{P}_svid_serial_changes_total") == 0
    source.svid = make_svid(ca, "spiffe://example.org/w", ttl=timedelta(minutes=10))
    assert value(m, f"{P}_svid_serial_changes_total") == 1
    assert 590 < value(m, f"{P}_svid_expiry_seconds") <= 600
    assert value(m, f"{P}_svid_serial_changes_total") == 1  # same serial: not counted again
    with pytest.raises(RuntimeError, match="already reports an SVID"):
        m.watch_svid(source)


def test_each_example_declares_its_routes_and_reasons() -> None:
    assert {"health", "records.list", "results.create"} <= api_metrics().routes
    assert {"missing-role", "bad-jwt"} <= api_metrics().reasons
    assert set(CALLS) < processor_metrics().routes
    gw = gateway_metrics(Policy(("GET /records", "GET /results"), 1.0, 1, None, frozenset()))
    assert {"GET /records", "GET /results", "other"} == gw.routes
    assert {"no-credentials", "rate-limited", "route-not-allowed", "apikey"} <= gw.reasons


@pytest.fixture
def scraped() -> Iterator[tuple[Metrics, PlainHttpServer]]:
    m = Metrics(routes=["health"])
    server = serve_metrics(m, ("127.0.0.1", 0), min_interval=30.0)
    yield m, server
    server.close()


def test_metrics_endpoint_serves_the_text_format_and_nothing_else(
    scraped: tuple[Metrics, PlainHttpServer],
) -> None:
    m, server = scraped
    m.request("health", 200, 0.001)
    with ConnectionPool(server.url) as pool:
        answer = pool.request("GET", "/metrics")
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b'spire_fabric_example_requests_total{route="health",status="200"} 1.0' in (
            answer.body
        )
        assert b"process_resident_memory_bytes" in answer.body
        assert b"python_info" not in answer.body  # no platform details
        assert pool.request("GET", "/").status == 404
        assert pool.request("GET", "/metrics?x=1").status == 404
        assert pool.request("POST", "/metrics", b"x").status in (405, 413)


def test_scrapes_render_at_most_once_per_interval(
    scraped: tuple[Metrics, PlainHttpServer],
) -> None:
    m, server = scraped
    with ConnectionPool(server.url) as pool:
        first = pool.request("GET", "/metrics").body
        m.request("health", 200, 0.001)  # not visible until the interval is over
        for _ in range(20):
            assert pool.request("GET", "/metrics").body == first


def test_scrape_connections_are_capped(scraped: tuple[Metrics, PlainHttpServer]) -> None:
    _, server = scraped
    host, port = server.url.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port))) for _ in range(MAX_SCRAPE_CONNECTIONS)]
    try:
        time.sleep(0.3)  # the server has accepted them all
        extra = socket.create_connection((host, int(port)))
        extra.settimeout(5)
        extra.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(100) == b""  # closed unanswered: over the cap
        extra.close()
    finally:
        for s in held:
            s.close()


def test_the_gateway_counts_decisions_by_reason_and_rate_limits(tmp_path: Path) -> None:
    api = PlainHttpServer(Api, ("127.0.0.1", 0))
    upstream = ConnectionPool(api.url)
    keys = tmp_path / "api-keys.json"
    policy = Policy(("GET /records",), 0.0, 1, None, frozenset())
    m = gateway_metrics(policy)
    handler = make_handler(
        upstream, ApiKeys(keys), RateLimiter(), policy, None,
        throttle=FailureThrottle(rate=1.0, burst=50), audit_budget=LineBudget(), metrics=m,
    )  # fmt: skip
    server = PlainHttpServer(handler, ("127.0.0.1", 0))
    key = issue_key(keys, "alice", ["GET /records"], 0.001, 2)
    try:
        with ConnectionPool(server.url) as pool:
            auth = {"Authorization": f"Bearer {key}"}
            assert pool.request("GET", "/records", None, auth).status == 200
            assert pool.request("GET", "/results", None, auth).status == 403
            assert pool.request("GET", "/records", None, auth).status == 429
            assert pool.request("GET", "/records").status == 401
            bad = {"Authorization": "Bearer sgw_x"}
            assert pool.request("GET", "/records", None, bad).status == 401
    finally:
        server.close()
        upstream.close()
        api.close()
    deny = f"{P}_authorization_decisions_total"
    assert value(m, deny, decision="allow", reason="apikey") == 1
    assert value(m, deny, decision="deny", reason="route-not-allowed") == 1
    assert value(m, deny, decision="deny", reason="rate-limited") == 1
    assert value(m, deny, decision="deny", reason="no-credentials") == 1
    assert value(m, deny, decision="deny", reason="bad-credentials") == 1
    assert value(m, f"{P}_rate_limited_requests_total") == 1
    assert value(m, f"{P}_requests_total", route="GET /records", status="200") == 1
    assert value(m, f"{P}_requests_total", route="other", status="403") == 1
    assert value(m, f"{P}_requests_total", route="GET /records", status="401") == 2
    text = m.render().decode()
    assert "alice" not in text and key not in text  # no client names or keys
