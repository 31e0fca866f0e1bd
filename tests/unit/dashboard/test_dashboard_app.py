"""The dashboard app on a stand-in deployment: every page renders, values are escaped, only
GET is served, and the security headers are set.

A stand-in (not SPIRE) is right here: these tests are about rendering hostile values and
HTTP behaviour; tests/e2e/test_dashboard_browser.py checks the pages against real SPIRE.
"""

from __future__ import annotations

import html.parser
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from spire_fabric.dashboard import PAGES, create_app
from spire_fabric.dashboard._telemetry import parse_samples, value_of
from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.runtime.deployment import ComponentHealth
from spire_fabric.server import (
    AttestedAgent,
    AuthorityStates,
    Bundle,
    Entry,
    ServerInfo,
)
from spire_fabric.topology import preset

HOSTILE = '<script>window.pwned=1</script>"><img src=x onerror="window.pwned=2">'


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


@dataclass
class _Api:
    trust_domain: str
    entries: list[Entry] = field(default_factory=list)

    def server_info(self, **_: Any) -> ServerInfo:
        return ServerInfo(1, 1, len(self.entries), 1, ())

    def get_bundle(self, **_: Any) -> Bundle:
        return Bundle(TrustDomain(self.trust_domain), sequence_number=3)

    def get_authority_state(self, kind: str, **_: Any) -> AuthorityStates:
        return AuthorityStates(active=None)

    def list_agents(self, **_: Any) -> list[AttestedAgent]:
        return [AttestedAgent(SpiffeId.parse(f"spiffe://{self.trust_domain}/spire/agent/x"))]

    def list_entries(self, **_: Any) -> list[Entry]:
        return self.entries

    def list_federation_relationships(self, **_: Any) -> list[Any]:
        return []

    def list_federated_bundles(self, **_: Any) -> list[Bundle]:
        return []


class _StandIn:
    name = "enterprise"
    target = "kubernetes"

    def __init__(self, entries: list[Entry]) -> None:
        self.topology = preset("enterprise")
        self._entries = entries

    def status(self) -> list[ComponentHealth]:
        return [
            ComponentHealth("spire-upstream-server", "server", 1, True, True, "ok"),
            ComponentHealth("downstream-agent-1", "agent", 2, False, False, HOSTILE),
        ]

    def agent_id(self, name: str) -> None:
        return None

    def server_health(self, name: str) -> tuple[bool, bool]:
        return True, True

    @contextmanager
    def server(self, name: str) -> Iterator[_Api]:
        td = self.topology.server(name).trust_domain.name
        yield _Api(td, self._entries if td == "downstream.example.org" else [])

    def workload_address(self, name: str) -> None:
        return None

    def monitoring_urls(self) -> None:
        return None

    def telemetry_endpoint(self, component: str) -> None:
        return None  # no telemetry to reach from a unit test

    def server_info(self, name: str) -> ServerInfo:
        with self.server(name) as api:
            return api.server_info()


@pytest.fixture
def client() -> TestClient:
    entry = Entry(
        SpiffeId.parse("spiffe://downstream.example.org/hostile"),
        SpiffeId.parse("spiffe://downstream.example.org/agent"),
        ("unix:uid:0",),
        id="e1",
        hint=HOSTILE,
        dns_names=(HOSTILE, "ok.example.org"),
    )
    # The Host a browser sends for http://localhost:8765/; the default "testserver" is refused.
    return TestClient(create_app(_StandIn([entry]), refresh=1), base_url="http://localhost:8765")


def test_every_page_and_fragment_renders_hostile_values_as_text(client: TestClient) -> None:
    for page in PAGES:
        path = "/" if page == "overview" else f"/{page}"
        for url in (path, "/fragment" + (path if path != "/" else "/")):
            response = client.get(url)
            assert response.status_code == 200, url
            parser = _Tags()
            parser.feed(response.text)
            assert "img" not in parser.tags, url
            assert parser.tags.count("script") == (0 if "fragment" in url else 1), url
    entries = client.get("/entries").text
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in entries


def test_search_matches_hint_and_dns_names_and_is_escaped_back(client: TestClient) -> None:
    found = client.get("/entries", params={"q": "ok.example"}).text
    assert '<span id="entry-count">1</span>' in found
    none = client.get("/entries", params={"q": "<script>nothing"}).text
    assert '<span id="entry-count">0</span>' in none and "&lt;script&gt;nothing" in none


def test_only_get_is_served_and_headers_forbid_inline_script(client: TestClient) -> None:
    assert client.post("/entries").status_code == 405
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_unhealthy_component_is_marked_red(client: TestClient) -> None:
    page = client.get("/").text
    assert 'data-component="downstream-agent-1" data-healthy="false"' in page
    summary = client.get("/api/summary.json").json()
    assert summary["health"]["downstream-agent-1"] is False and summary["entries"] == 1


def test_telemetry_parser_reads_spire_lines() -> None:
    text = (
        "# HELP spire_server_started x\n"
        'spire_server_started{host="vm",version="1_13_3"} 1\n'
        'spire_server_server_ca_sign_x509_svid{host="vm"} 5\n'
        'spire_agent_x_elapsed_time{quantile="0.5"} NaN\n'
    )
    samples = parse_samples(text)
    assert [s.name for s in samples] == [
        "spire_server_started",
        "spire_server_server_ca_sign_x509_svid",
    ]
    assert samples[0].label("version") == "1_13_3"
    assert value_of(samples, "spire_server_server_ca_sign_x509_svid") == 5
    assert value_of(samples, "missing") is None


def test_authorities_page_shows_verifys_authority_checks_red_when_nothing_is_known(
    client: TestClient,
) -> None:
    # the stand-in reports no active authority and serves no SVID: every server's checks
    # must be there and red (never green for want of facts)
    page = client.get("/authorities").text
    for server in ("spire-upstream-server", "spire-downstream-server"):
        for what in ("expiry", "svids"):
            assert f'data-check="authority-{what}:{server}" data-ok="false"' in page
    assert "no active X.509 authority" in page
    assert "spire-downstream-server&#39;s copy of enterprise-root.org" in page


def test_the_entries_page_pages_and_searches_fifty_thousand_entries_on_the_server() -> None:
    many = [
        Entry(
            SpiffeId.parse(f"spiffe://downstream.example.org/w/{i}"),
            SpiffeId.parse("spiffe://downstream.example.org/agent"),
            (f"unix:uid:{i}",),
            id=f"e{i}",
        )
        for i in range(50_000)
    ]
    client = TestClient(create_app(_StandIn(many), refresh=60), base_url="http://localhost:8765")
    first = client.get("/entries").text
    assert '<span id="entry-count">50000</span>' in first
    assert first.count("<tr data-entry=") == 100
    assert 'id="entry-range">1\u2013100<' in first and "page 1 of 500" in first
    assert 'href="/entries?q=&amp;p=2"' in first and 'id="prev-page"' not in first
    last = client.get("/entries", params={"p": "500"}).text
    assert last.count("<tr data-entry=") == 100 and 'data-entry="e49999"' in last
    assert 'id="next-page"' not in last
    # past the end and nonsense both land on a real page
    assert 'data-entry="e49999"' in client.get("/entries", params={"p": "99999"}).text
    assert 'data-entry="e0"' in client.get("/entries", params={"p": "x"}).text
    found = client.get("/entries", params={"q": "/w/4999", "p": "1"}).text
    # /w/4999 and /w/49990../w/49999: searched over all 50k, then paged
    assert '<span id="entry-count">11</span>' in found and found.count("<tr data-entry=") == 11
    fragment = client.get("/fragment/entries", params={"q": "uid:7", "p": "2"}).text
    assert "page 2 of" in fragment and fragment.count("<tr data-entry=") == 100
