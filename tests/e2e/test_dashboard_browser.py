"""The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a real enterprise topology: every page loads and is screenshotted, the numbers
shown are the SPIRE API's and the telemetry endpoint's, a component that stops answering
turns red within one refresh, and hostile entry values render as text with no script run.

Screenshots go to $SPIRE_FABRIC_ARTIFACTS (default: a pytest temp dir, printed).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from spire_fabric.identity import SpiffeId
from spire_fabric.runtime.monitoring import query_range
from spire_fabric.server import Entry, X509Authority
from spire_fabric.testing import short_tempdir
from spire_fabric.testing.pki import make_ca
from spire_fabric.topology import dump_topology, preset

from .conftest import Deploy, free_port_base

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("starlette")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (scripts/install-browser)", allow_module_level=True
    )

# The flags the machine notes ask for: without the background-networking ones Chromium
# keeps dialling Google's hosts, which this machine refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REFRESH = 1.0
PAGES = ("", "servers", "authorities", "agents", "entries", "federation", "workloads", "metrics")
# one authorities report is shown for this long (AUTHORITIES_INTERVAL) plus its gathering
AUTHORITIES_WAIT_MS = (REFRESH + 5 + 15) * 1000
HOSTILE_HINT = '<script>window.__pwned=1</script>"><img src=x onerror="window.__pwned=2">'
HOSTILE_DNS = ('"><img src=x onerror="window.__pwned=3">.example.org', "x<script>.example.org")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def topology() -> Iterator[tuple[Deploy, dict[str, str]]]:
    root = short_tempdir("sf-db-")
    deploy = Deploy(root / "spire-fabric" / "enterprise", free_port_base())
    env = dict(os.environ, XDG_STATE_HOME=str(root))  # where attach("enterprise") looks
    # The preset's peers re-fetch each other's bundle every 15 s (its 1m refresh hint); the
    # federation test below tampers with one server's copy and needs the copy to stay as
    # tampered while the pages are read, so here the hint is SPIRE's default again.
    t = preset("enterprise")
    servers = tuple(
        dataclasses.replace(s, bundle_endpoint=dataclasses.replace(
            s.bundle_endpoint, refresh_hint=timedelta(minutes=5)))
        if s.bundle_endpoint is not None else s
        for s in t.servers
    )  # fmt: skip
    topology_file = root / "enterprise.yaml"
    topology_file.write_text(dump_topology(dataclasses.replace(t, servers=servers)))
    try:
        deploy.up("--topology", str(topology_file))
        yield deploy, env
    finally:
        deploy.run("down", "--purge")


@pytest.fixture(scope="module")
def dashboard(topology: tuple[Deploy, dict[str, str]]) -> Iterator[str]:
    _, env = topology
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spire_fabric.dashboard",
            "--deployment",
            "enterprise",
            "--port",
            str(port),
            "--refresh",
            str(REFRESH),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/api/summary.json", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"dashboard did not start:\n{proc.stdout.read()}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
    yield pg
    context.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(os.environ.get("SPIRE_FABRIC_ARTIFACTS") or tmp_path_factory.mktemp("dashboard"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots: {path}")
    return path


def _spire(deploy: Deploy) -> dict[str, Any]:
    d = deploy.deployment()
    agents = entries = 0
    bundles = {}
    for s in d.topology.servers:
        with d.server(s.name) as api:
            agents += len(list(api.list_agents()))
            entries += len(list(api.list_entries()))
            bundles[s.name] = api.get_bundle()
    return {"agents": agents, "entries": entries, "bundles": bundles}


def test_every_page_loads_without_errors_and_is_screenshotted(
    dashboard: str, page: Any, artifacts: Path
) -> None:
    for name in PAGES:
        page.goto(f"{dashboard}/{name}")
        page.wait_for_selector("main#content h2")
        page.screenshot(path=str(artifacts / f"{name or 'overview'}.png"), full_page=True)
    assert page.errors == []
    assert len(list(artifacts.glob("*.png"))) >= len(PAGES)


def test_shown_counts_and_expiry_are_what_the_spire_api_returns(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any
) -> None:
    deploy, _ = topology
    truth = _spire(deploy)
    page.goto(f"{dashboard}/agents")
    agents = len(preset("enterprise").agents)  # each attested: SPIRE lists every one
    assert int(page.inner_text("#agent-count")) == truth["agents"] == agents
    page.goto(f"{dashboard}/entries")
    assert int(page.inner_text("#entry-count")) == truth["entries"]
    page.goto(f"{dashboard}/servers")
    for server, bundle in truth["bundles"].items():
        shown = page.get_attribute(f'section[data-server="{server}"] .bundle-expiry', "data-expiry")
        cert = bundle.x509_authorities[0].certificate
        assert int(shown) == int(cert.not_valid_after_utc.timestamp())


def test_authorities_page_shows_each_servers_active_authorities_and_the_checks(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any, artifacts: Path
) -> None:
    deploy, _ = topology
    d = deploy.deployment()
    page.goto(f"{dashboard}/authorities")
    page.wait_for_selector("#authority-checks")
    for s in d.topology.servers:
        with d.server(s.name) as api:
            truth = {kind: api.get_authority_state(kind).active for kind in ("x509", "jwt")}
        for kind, active in truth.items():
            assert active is not None
            row = f'section[data-server="{s.name}"] tr[data-kind="{kind}"][data-slot="active"]'
            assert page.get_attribute(row, "data-authority-id") == active.authority_id
            assert int(page.get_attribute(row, "data-expiry") or 0) == active.expires_at
    checks = page.locator("#authority-checks tr[data-check]")
    ids = {checks.nth(i).get_attribute("data-check") for i in range(checks.count())}
    assert {
        f"authority-{what}:{s.name}" for what in ("expiry", "svids", "tainted")
        for s in d.topology.servers
    } | {
        "authority-copy:spire-downstream-server->enterprise-root.org",
        "authority-copy:spire-upstream-server->downstream.example.org",
    } == ids  # fmt: skip
    red = page.locator('#authority-checks tr[data-ok="false"]')
    assert red.count() == 0, [red.nth(i).inner_text() for i in range(red.count())]
    copy = 'tr[data-check="authority-copy:spire-downstream-server->enterprise-root.org"]'
    assert "spire-downstream-server's copy of enterprise-root.org" in page.inner_text(copy)
    page.screenshot(path=str(artifacts / "authorities.png"), full_page=True)
    assert page.errors == []


def test_shown_metric_is_the_telemetry_endpoints_value(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any
) -> None:
    deploy, _ = topology
    server = deploy.deployment().topology.server("spire-upstream-server")
    metric = "spire_server_ca_manager_x509_ca_prepare"  # prepared once at start: stable
    body = (
        urllib.request.urlopen(f"http://{server.host}:{server.ports.telemetry}/metrics", timeout=5)
        .read()
        .decode()
    )
    (raw,) = re.findall(rf"^{metric}{{[^}}]*}} (\S+)$", body, re.M)
    page.goto(f"{dashboard}/metrics")
    row = page.locator(
        f'details[data-component="spire-upstream-server"] tr[data-metric="{metric}"]'
    )
    assert float(row.locator("td.value").text_content() or "nan") == float(raw)


def test_stopped_agent_turns_red_within_one_refresh_without_a_reload(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any, artifacts: Path
) -> None:
    """SIGSTOP, not SIGKILL: the supervisor restarts a killed agent and it is ready again in
    about a second (measured), quicker than a refresh; a stopped agent stays unanswering
    until SIGCONT, so the test can wait for red without a race."""
    deploy, _ = topology
    (row,) = [r for r in deploy.deployment().status() if r.name == "downstream-agent-3"]
    assert row.pid and row.healthy
    page.goto(dashboard + "/")
    page.evaluate("window.__not_reloaded = true")
    selector = 'tr[data-component="downstream-agent-3"]'
    assert page.get_attribute(selector, "data-healthy") == "true"
    os.kill(row.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        # one refresh period plus the time one snapshot may take with a hung agent
        # (its health check times out after 2 s)
        page.wait_for_selector(f'{selector}[data-healthy="false"]', timeout=(REFRESH + 8) * 1000)
        took = time.monotonic() - start
        print(f"red after {took:.1f}s")
        assert page.evaluate("window.__not_reloaded") is True
        page.screenshot(path=str(artifacts / "overview-agent-down.png"), full_page=True)
    finally:
        os.kill(row.pid, signal.SIGCONT)
    page.wait_for_selector(f'{selector}[data-healthy="true"]', timeout=30_000)


def test_metrics_page_charts_prometheus_history_and_lists_a_firing_alert_live(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any, artifacts: Path
) -> None:
    """With the deployment's Prometheus the charts are its range queries over the last hour:
    the "targets up" chart draws exactly the series and points the same query returns. A
    frozen agent's SpireAgentDown appears in the alert list without a reload (the page's
    own refresh) and leaves it once the agent is resumed."""
    deploy, _ = topology
    d = deploy.deployment()
    urls = d.monitoring_urls()
    assert urls is not None
    page.goto(f"{dashboard}/metrics")
    assert page.locator("section.alerts p.ok").count() == 1  # nothing firing yet
    chart = page.locator('svg[aria-label="targets up, by job (Prometheus, last hour)"]')
    drawn = chart.locator("polyline").evaluate_all(
        "ls => ls.map(l => l.getAttribute('points').trim().split(' ').length)")
    now = time.time()
    series = query_range(urls[0], "sum by (job) (up)", now - 3600, now, 30)
    assert {s.labels["job"] for s in series} >= {"spire-server", "spire-agent", "workload",
                                                 "ghostunnel", "svid-helper"}  # fmt: skip
    assert len(drawn) == len(series)
    by_job = sorted(series, key=lambda s: s.labels["job"])
    # the same hour, sampled every 30 s: one point more or less at the window's edges
    assert all(abs(n - len(s.points)) <= 1 for n, s in zip(drawn, by_job, strict=True)), drawn
    legend = chart.locator("text").all_text_contents()
    assert all(any(t.startswith(f"{s.labels['job']}: ") for t in legend) for s in series), legend
    page.evaluate("window.__not_reloaded = true")
    agent = "downstream-agent-3"
    (row,) = [r for r in d.status() if r.name == agent]
    assert row.pid and row.healthy
    alert = f'tr[data-alert="SpireAgentDown"][data-component="{agent}"]'
    os.kill(row.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        page.wait_for_selector(alert, timeout=90_000)  # issue 24: within 90 s
        print(f"SpireAgentDown listed {time.monotonic() - start:.1f} s after SIGSTOP")
        assert page.evaluate("window.__not_reloaded") is True
        page.screenshot(path=str(artifacts / "metrics-alert-firing.png"), full_page=True)
    finally:
        os.kill(row.pid, signal.SIGCONT)
    page.wait_for_selector(alert, state="detached", timeout=60_000)


def test_killed_agent_is_shown_restarted_by_the_supervisor(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any
) -> None:
    deploy, _ = topology
    (row,) = [r for r in deploy.deployment().status() if r.name == "downstream-agent-2"]
    page.goto(dashboard + "/")
    os.kill(row.pid, signal.SIGKILL)
    # the pid cell of the row, looked up afresh: each refresh replaces the table
    page.wait_for_function(
        """pid => {
            const cell = document.querySelector(
                'tr[data-component="downstream-agent-2"] td:nth-child(3)');
            const shown = cell ? cell.textContent.trim() : '';
            return shown !== '' && shown !== '-' && shown !== String(pid);
        }""",
        arg=row.pid,
        timeout=20_000,
    )
    page.wait_for_selector('tr[data-component="downstream-agent-2"][data-healthy="true"]')


def test_federated_bundle_that_differs_from_the_peers_is_highlighted(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any, artifacts: Path
) -> None:
    """A stale or tampered copy is made real through the Server API: the downstream server's
    copy of enterprise-root.org gets an extra X.509 authority; a refresh from the bundle
    endpoint puts the true bundle back.

    SPIRE itself re-fetches the peer's bundle every quarter of its refresh hint (75 s here)
    and so may undo the tampering while the pages are read (CI, 2026-12-07). The test then
    tampers again, at most twice more; a page that misses a copy which is still tampered
    fails at once."""
    deploy, _ = topology
    d = deploy.deployment()
    row = 'tr[data-holder="spire-downstream-server"][data-peer="enterprise-root.org"]'
    page.goto(f"{dashboard}/federation")
    assert "in-sync" in (page.get_attribute(row, "class") or "")
    with d.server("spire-downstream-server") as api:
        extra = X509Authority(make_ca("enterprise-root.org", "Rogue").cert)

        def still_tampered() -> bool:
            copy = api.get_federated_bundle("enterprise-root.org")
            return any(a.certificate == extra.certificate for a in copy.x509_authorities)

        try:
            for attempt in range(3):
                copy = api.get_federated_bundle("enterprise-root.org")
                api.update_federated_bundles(
                    [dataclasses.replace(copy, x509_authorities=(*copy.x509_authorities, extra))]
                )
                page.goto(f"{dashboard}/federation")
                try:
                    _tampered_copy_is_shown(page, dashboard, row, artifacts)
                    break
                except sync_api.TimeoutError as e:
                    tampered = still_tampered()
                    if attempt == 2 or tampered:  # the copy differs and a page does not say so
                        page.goto(f"{dashboard}/federation")
                        shown = page.locator(row)
                        raise AssertionError(
                            f"attempt {attempt + 1}: {e}; the server's copy is "
                            f"{'still' if tampered else 'no longer'} tampered; the row is "
                            f"class={shown.get_attribute('class')!r} "
                            f"text={shown.inner_text()!r}"
                        ) from e
        finally:
            api.refresh_bundle("enterprise-root.org")
    page.goto(f"{dashboard}/federation")
    page.wait_for_selector(f"{row}.in-sync", timeout=(REFRESH + 8) * 1000)


def _tampered_copy_is_shown(page: Any, dashboard: str, row: str, artifacts: Path) -> None:
    page.wait_for_selector(f"{row}.mismatch", timeout=(REFRESH + 8) * 1000)
    assert "1 X.509 added" in page.inner_text(row)
    page.screenshot(path=str(artifacts / "federation-mismatch.png"), full_page=True)
    # the authority check of that direction turns red on the authorities page, naming the
    # extra authority, and the other direction stays green
    page.goto(f"{dashboard}/authorities")
    check = 'tr[data-check="authority-copy:spire-downstream-server->enterprise-root.org"]'
    page.wait_for_selector(f'{check}[data-ok="false"]', timeout=AUTHORITIES_WAIT_MS)
    assert "still has" in page.inner_text(check)
    other = 'tr[data-check="authority-copy:spire-upstream-server->downstream.example.org"]'
    assert page.get_attribute(other, "data-ok") == "true"
    page.screenshot(path=str(artifacts / "authorities-copy-differs.png"), full_page=True)


def test_hostile_hint_and_dns_names_render_as_text_and_no_script_runs(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any, artifacts: Path
) -> None:
    deploy, _ = topology
    d = deploy.deployment()
    entry = Entry(
        SpiffeId.parse("spiffe://downstream.example.org/ns/xss/sa/probe"),
        d.agent_id("downstream-agent-1"),  # type: ignore[arg-type]
        ("unix:uid:4242",),  # no process of this test runs as uid 4242
        hint=HOSTILE_HINT,
        dns_names=HOSTILE_DNS,
    )
    with d.server("spire-downstream-server") as api:
        created = api.create_entry(entry)
    try:
        page.goto(f"{dashboard}/entries?q=xss")
        row = page.locator(f'tr[data-entry="{created.id}"]')
        row.wait_for()
        assert row.locator("td.hint").inner_text() == HOSTILE_HINT
        shown_dns = row.locator("td.dns").inner_text().split("\n")
        assert [s for s in shown_dns if s] == list(HOSTILE_DNS)
        page.wait_for_timeout(REFRESH * 2500)  # through auto-refreshes too
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img").count() == 0
        assert page.locator("main script").count() == 0
        page.screenshot(path=str(artifacts / "entries-hostile.png"), full_page=True)
        for name in PAGES:  # every page, not only the one searched
            page.goto(f"{dashboard}/{name}")
            page.wait_for_selector("main#content h2")
            assert page.evaluate("window.__pwned") is None
    finally:
        with d.server("spire-downstream-server") as api:
            api.delete_entries([created.id])


# SPIRE itself takes minutes to create 50k entries on this 2-core machine (SQLite, one
# insert each, and the local 1 s entry-cache reload re-reading them all), more than a test
# may spend; 10k real entries make the same pages. The unit test pages 50k, and
# SPIRE_FABRIC_DASHBOARD_ENTRIES=50000 runs this one at that size.
SCALE_ENTRIES = int(os.environ.get("SPIRE_FABRIC_DASHBOARD_ENTRIES", "10000"))


def test_entries_page_stays_responsive_with_many_entries(
    topology: tuple[Deploy, dict[str, str]], dashboard: str, page: Any, artifacts: Path
) -> None:
    """Many real entries (10k by default) on the downstream server: the page shows one
    page of 100, pages and searches on the server, each in seconds. Parented to an ID no
    agent has, so no agent syncs them and the other tests' agents are undisturbed; deleted
    at the end."""
    deploy, _ = topology
    d = deploy.deployment()
    parent = SpiffeId.parse("spiffe://downstream.example.org/scale-test/parent")
    entries = [
        Entry(SpiffeId.parse(f"spiffe://downstream.example.org/scale/{i}"), parent,
              (f"unix:uid:{100000 + i}",))
        for i in range(SCALE_ENTRIES)
    ]  # fmt: skip
    with d.server("spire-downstream-server") as api:
        created = api.create_entries(entries, timeout=600)
        created.raise_for_errors()
    ids = [item.value.id for item in created.items if item.value is not None]
    assert len(ids) == SCALE_ENTRIES
    try:
        deadline = time.monotonic() + 60  # the dashboard's next snapshot lists them
        while True:
            with urllib.request.urlopen(f"{dashboard}/api/summary.json", timeout=30) as r:
                shown = int(re.search(rb'"entries":\s*(\d+)', r.read()).group(1))  # type: ignore[union-attr]
            if shown >= SCALE_ENTRIES or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert shown >= SCALE_ENTRIES
        start = time.monotonic()
        page.goto(f"{dashboard}/entries")
        page.wait_for_selector("tr[data-entry]")
        first_load = time.monotonic() - start
        assert int(page.inner_text("#entry-count")) == shown
        assert page.locator("tr[data-entry]").count() == 100
        start = time.monotonic()
        page.click("#next-page")
        page.wait_for_url(re.compile(r"p=2"))
        page.wait_for_selector("tr[data-entry]")
        next_load = time.monotonic() - start
        assert page.inner_text("#entry-range") == "101\u2013200"
        start = time.monotonic()
        page.fill("input[name=q]", "/scale/4999")
        page.click("form.search button")
        page.wait_for_url(re.compile(r"q=%2Fscale%2F4999"))
        search_load = time.monotonic() - start
        # /scale/4999, and /scale/49990 .. /scale/49999 when there are 50k
        expected = sum(1 for i in range(SCALE_ENTRIES) if "/scale/4999" in f"/scale/{i}")
        assert int(page.inner_text("#entry-count")) == expected
        assert page.locator("tr[data-entry]").count() == expected
        page.wait_for_timeout(REFRESH * 2500)  # auto-refresh keeps the page and search
        assert page.locator("tr[data-entry]").count() == expected
        page.screenshot(path=str(artifacts / "entries-many.png"), full_page=False)
        print(f"{SCALE_ENTRIES} entries: first page {first_load:.2f} s, next {next_load:.2f} s, "
              f"search {search_load:.2f} s")  # fmt: skip
        # "responsive": each answer in seconds on a loaded 2-core machine, not minutes
        assert max(first_load, next_load, search_load) < 10
    finally:
        with d.server("spire-downstream-server") as api:
            api.delete_entries(ids, timeout=600).raise_for_errors()
