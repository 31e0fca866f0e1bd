"""From nothing to a verified enterprise topology, faults that verification must catch, and
a `down` that leaves nothing behind. Everything here is real SPIRE."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from drill.alerts import Fault, GatewayTraffic, fire_and_resolve, wait_for_good_fetch
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from spire_fabric.dashboard import create_app
from spire_fabric.identity import SpiffeId, X509Svid
from spire_fabric.runtime.binaries import SPIRE_VERSION
from spire_fabric.runtime.core.ca import CaStore
from spire_fabric.runtime.core.versions import load_versions
from spire_fabric.runtime.local.context import agent_component, server_component
from spire_fabric.runtime.local.ports import is_listening
from spire_fabric.runtime.local.supervisor import pid_alive
from spire_fabric.runtime.monitoring import Alert, active_alerts, scrape_targets
from spire_fabric.testing import short_tempdir
from spire_fabric.testing.pki import Ca, make_svid
from spire_fabric.tls import authorize_id, mtls_client_context, mtls_urlopen
from spire_fabric.verify import Report
from spire_fabric.verify._replica_checks import _authorities, _entries, _same_bundle

from .conftest import Deploy, free_port_base

DOWNSTREAM = "spire-downstream-server"
UPSTREAM = "spire-upstream-server"


def failed_ids(report: Report) -> set[str]:
    return {c.id for c in report.failed}


def wait_for_green(deploy: Deploy, timeout: float = 30) -> Report:
    deadline = time.monotonic() + timeout
    while True:
        report = deploy.verify()
        if report.ok or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def involving(report: Report, workload: str) -> set[str]:
    """Checks whose id names a workload (its SVID, the handshakes and JWTs it takes part in)."""
    return {c.id for c in report.checks if workload in c.id.partition(":")[2].split("->")}


def test_up_from_nothing_is_fully_verified(enterprise: Deploy) -> None:
    report = enterprise.verify()
    assert report.ok, [f"{c.id}: {c.detail}" for c in report.failed]
    ids = {c.id for c in report.checks}
    # the checks DESIGN.md and the installer issue ask for, for every component
    assert {f"server-live:{UPSTREAM}", f"server-live:{DOWNSTREAM}"} <= ids
    assert {f"datastore:{UPSTREAM}", f"datastore:{DOWNSTREAM}"} <= ids
    assert {f"agent-attested:downstream-agent-{i}" for i in (1, 2, 3)} <= ids
    assert {
        f"federated-bundle:{UPSTREAM}->downstream.example.org",
        f"federated-bundle:{DOWNSTREAM}->enterprise-root.org",
    } <= ids
    assert {"mtls:upstream-client->enterprise-api", "jwt:upstream-client->enterprise-api"} <= ids
    assert any(i.startswith("mtls-refused:") for i in ids)
    # the authority checks, each server and each direction of the federation
    assert {f"authority-{what}:{s}" for what in ("expiry", "svids", "tainted")
            for s in (UPSTREAM, DOWNSTREAM)} <= ids  # fmt: skip
    assert report.get(f"authority-copy:{DOWNSTREAM}->enterprise-root.org").title == (
        f"{DOWNSTREAM}'s copy of enterprise-root.org"
    )
    assert f"authority-copy:{UPSTREAM}->downstream.example.org" in ids
    # monitoring: every server, agent and example workload scraped and up, nothing firing
    assert report.get("monitoring-targets").ok and report.get("monitoring-alerts").ok


def test_replica_checks_hold_against_each_replicas_own_api(enterprise: Deploy) -> None:
    """The HA checks' bodies against real SPIRE: locally each server is its one replica,
    so `verify` does not list them (they run for servers with replicas on Kubernetes);
    here they are called directly, so what they assert is proven against SPIRE, and a
    replica the server does not have is refused by name."""
    d = enterprise.deployment()
    s = d.topology.server(DOWNSTREAM)
    assert [r.name for r in d.server_replicas(DOWNSTREAM)] == [DOWNSTREAM]
    assert _same_bundle(d, s).startswith("1 replicas: ")
    chained = _authorities(d, s)
    assert chained.startswith("1 distinct authorities, each verified against the bundle")
    assert "Downstream Regional Intermediate CA (downstream.example.org)" in chained
    assert _entries(d, s).endswith("entries on each of 1 replicas")
    with pytest.raises(KeyError, match="not 'spire-downstream-server-1'"):
        d.replica_server(DOWNSTREAM, f"{DOWNSTREAM}-1")
    # the version of every component, recorded by `up` and shown by `plan`
    recorded = load_versions(enterprise.state_dir)
    assert set(recorded) == {
        f"server/{UPSTREAM}",
        f"server/{DOWNSTREAM}",
        "agent/upstream-agent",
    } | {f"agent/downstream-agent-{i}" for i in (1, 2, 3, 4, 5)}  # 4, 5: inventory's, the poller's
    assert set(recorded.values()) == {SPIRE_VERSION}
    plan = json.loads(enterprise.run("plan", "--output", "json").stdout)
    assert plan["versions"] == recorded


def test_verify_cli_reports_json_and_exit_status(enterprise: Deploy) -> None:
    result = enterprise.run("verify", "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and len(data["checks"]) >= 20


def test_status_lists_every_component(enterprise: Deploy) -> None:
    result = enterprise.run("status", "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    expected = {UPSTREAM, DOWNSTREAM, "upstream-agent"} | {
        f"downstream-agent-{i}" for i in (1, 2, 3)
    }
    expected |= {"prometheus", "alertmanager"}
    assert set(rows) >= expected
    for name in expected:
        assert rows[name]["healthy"] and rows[name]["pid"], rows[name]
    assert rows["prometheus"]["detail"] == f"http://127.0.0.1:{enterprise.port_base - 910}"


def _agent_down_alerts(alertmanager: str, agent: str) -> list[Alert]:
    return [a for a in active_alerts(alertmanager)
            if a.name == "SpireAgentDown" and a.component == agent]  # fmt: skip


def test_a_frozen_agent_fires_spire_agent_down_and_resolves_when_resumed(
    enterprise: Deploy,
) -> None:
    """SIGSTOP of the agent process we started: it keeps its socket (the kernel still
    accepts connections) but answers nothing, like a hung agent. Prometheus' scrape times
    out, `up` goes 0, and SpireAgentDown must reach Alertmanager within 90 s (issue 24);
    SIGCONT must resolve it."""
    d = enterprise.deployment()
    urls = d.monitoring_urls()
    assert urls is not None
    agent = "downstream-agent-1"
    pid = d.supervisor.states()[agent_component(agent)].pid
    assert pid is not None and not _agent_down_alerts(urls[1], agent)
    frozen = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        while not (alerts := _agent_down_alerts(urls[1], agent)):
            assert time.monotonic() - frozen < 90, "SpireAgentDown did not fire within 90 s"
            time.sleep(1)
        fired = time.monotonic() - frozen
        assert alerts[0].severity == "critical" and agent in alerts[0].summary
        # `deploy status` ends with the firing alerts
        status = enterprise.run("status").stdout.rstrip().splitlines()
        at = next(i for i, line in enumerate(status) if line.startswith("alerts: "))
        assert "firing" in status[at] and any(
            "SpireAgentDown" in line and agent in line for line in status[at + 1 :]
        ), status[at:]
        # the dashboard lists it, and its charts are Prometheus' range queries
        with TestClient(create_app(d, refresh=1), base_url="http://localhost:8765") as web:
            page = web.get("/metrics").text
        assert f'data-alert="SpireAgentDown" data-component="{agent}"' in page
        assert "targets up, by job (Prometheus, last hour)" in page
        assert page.count("<polyline") >= 5  # spire-server, spire-agent, workload, ... lines
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    while _agent_down_alerts(urls[1], agent):
        assert time.monotonic() - resumed < 90, "SpireAgentDown did not resolve within 90 s"
        time.sleep(1)
    resolved = time.monotonic() - resumed
    print(f"SpireAgentDown: fired {fired:.1f} s after SIGSTOP, resolved {resolved:.1f} s "
          "after SIGCONT")  # fmt: skip
    assert d.supervisor.states()[agent_component(agent)].pid == pid  # frozen, not restarted


@contextlib.contextmanager
def port_blocked(host: str, port: int) -> Iterator[None]:
    """Every TCP packet to host:port answered with a reset, as if nothing listened there,
    until the block ends. One iptables rule on this host's OUTPUT chain (loopback traffic
    passes it), naming exactly this deployment's port and tagged with this test's pid, and
    deleted by the same spec: other deployments on the machine, on other ports, never see
    it. The test runs as root (like the cluster tests); a machine where the rule cannot be
    added fails here, naming iptables' own message, rather than skipping."""
    spec = ["OUTPUT", "-p", "tcp", "-d", host, "--dport", str(port), "-m", "comment",
            "--comment", f"spire-fabric-e2e-{os.getpid()}", "-j", "REJECT",
            "--reject-with", "tcp-reset"]  # fmt: skip
    added = subprocess.run(["iptables", "-w", "10", "-I", *spec], capture_output=True, text=True)
    assert added.returncode == 0, f"cannot block {host}:{port}: {added.stderr.strip()}"
    try:
        yield
    finally:
        subprocess.run(["iptables", "-w", "10", "-D", *spec], check=True, capture_output=True)


def test_a_blocked_bundle_endpoint_and_an_unreachable_api_fire_their_alerts_and_resolve(
    enterprise: Deploy,
) -> None:
    """Two faults at once, each undone as soon as its alert reaches Alertmanager (one wait
    for both keeps the module short):

    - the upstream's bundle endpoint refuses every connection (its port blocked): the
      downstream server's fetches fail, and FederatedBundleStale must fire once no fetch
      has succeeded for a whole refresh hint (1 minute in the preset, a fetch every 15 s,
      once the first good fetch happened);
    - enterprise-api refuses every connection (its port blocked) while upstream-client
      calls the gateway: the gateway answers 503, and GatewayErrors must fire on the 5xx
      ratio.

    Each must resolve when its port opens again, so the tests after this one see a
    deployment with nothing firing (verify is red while an alert fires)."""
    d = enterprise.deployment()
    urls = d.monitoring_urls()
    assert urls is not None
    alertmanager = urls[1]
    upstream = d.topology.server(UPSTREAM)
    api = d.workload_address("enterprise-api")
    federation = upstream.ports.federation
    assert api is not None and federation is not None
    faults = [
        Fault("FederatedBundleStale", DOWNSTREAM, lambda: port_blocked(upstream.host, federation),
              fire_within=120),
        Fault("GatewayErrors", "security-gateway", lambda: port_blocked(api.host, api.port),
              fire_within=60),
    ]  # fmt: skip
    wait_for_good_fetch(urls[0], DOWNSTREAM)
    with GatewayTraffic(d) as traffic:
        fire_and_resolve(alertmanager, faults)
    assert traffic.statuses[503] > 0 and traffic.statuses[200] > 0, traffic.statuses
    assert wait_for_green(enterprise).ok


INVENTORY_TLS = "inventory/tls"


def test_inventory_sidecar_admits_its_allow_list_and_refuses_the_rest(enterprise: Deploy) -> None:
    report = enterprise.verify()
    checks = {c.id: c for c in report.checks if c.id.startswith("sidecar-")}
    assert set(checks) == {
        f"sidecar-allowed:enterprise-api->{INVENTORY_TLS}",
        f"sidecar-allowed:security-gateway->{INVENTORY_TLS}",
        f"sidecar-refused:data-processor->{INVENTORY_TLS}",
        f"sidecar-forged:enterprise-api->{INVENTORY_TLS}",
        f"sidecar-loopback-only:{INVENTORY_TLS}",
        "sidecar-files:catalog/svid",
    }
    assert all(c.ok for c in checks.values()), [f"{c.id}: {c.detail}" for c in checks.values()]
    assert "HTTP 200" in checks[f"sidecar-allowed:enterprise-api->{INVENTORY_TLS}"].detail


def test_prometheus_scrapes_each_sidecars_own_metrics(enterprise: Deploy) -> None:
    """ghostunnel's Prometheus text (its --status port, /_metrics/prometheus) and the
    files-mode helper's /metrics (its health port) are scraped and up; the helper's expiry
    is that of the SVID it wrote, and it counts its writes."""
    d = enterprise.deployment()
    urls = d.monitoring_urls()
    assert urls is not None
    jobs = {x.component: (x.job, x.health) for x in scrape_targets(urls[0])}
    assert jobs[INVENTORY_TLS] == ("ghostunnel", "up")
    assert jobs["api-poller/mtls"] == ("ghostunnel", "up")
    assert jobs["catalog/svid"] == ("svid-helper", "up")
    (tls,) = d.topology.workload("inventory").sidecars
    (files,) = d.topology.workload("catalog").sidecars

    def get(port: int | None, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return str(resp.read().decode())

    assert any(line.startswith("ghostunnel_") for line in
               get(tls.status_port, "/_metrics/prometheus").splitlines())  # fmt: skip
    helper = {s.name: s.value for f in text_string_to_metric_families(
        get(files.status_port, "/metrics")) for s in f.samples}  # fmt: skip
    written = x509.load_pem_x509_certificate(d.sidecar_files("catalog")["svid.pem"][0])
    left = written.not_valid_after_utc.timestamp() - time.time()
    assert abs(helper["spire_fabric_helper_svid_expiry_seconds"] - left) < 10, helper
    assert helper["spire_fabric_helper_file_writes_total"] >= 1, helper


def test_the_forgery_is_refused_for_its_trust_domain_alone(enterprise: Deploy) -> None:
    """Positive control of the forged-SVID check: the same SVID signed by the downstream
    trust domain's own intermediate gets through the sidecar, so the refusal above is the
    name constraint's doing, not a broken forgery."""
    d = enterprise.deployment()
    t = d.topology
    api = t.workload("enterprise-api")
    ca = CaStore(d.ca_directory).signing_ca(t, t.server(DOWNSTREAM))
    assert ca is not None
    own = x509.load_pem_x509_certificates(ca.chain)[0]
    key = serialization.load_pem_private_key(ca.key, None)
    svid = make_svid(Ca(own, key), api.spiffe_id)  # type: ignore[arg-type]
    svid = X509Svid(svid.spiffe_id, (svid.leaf, own), svid.private_key)
    address = d.workload_address("inventory")
    assert address is not None
    inventory_id = SpiffeId.parse(t.workload("inventory").spiffe_id)
    context = mtls_client_context(svid, d.x509_context("enterprise-api").get_bundle_set(),
                                  authorize_id(inventory_id))  # fmt: skip
    with mtls_urlopen(f"{address.url}/items", context, timeout=10) as resp:
        assert json.loads(resp.read())["service"] == "inventory"


def test_the_gateway_route_reads_inventory_through_the_api_and_the_sidecar(
    enterprise: Deploy,
) -> None:
    """upstream-client -> security-gateway -> enterprise-api (our SDK, mTLS as itself) ->
    inventory's ghostunnel -> nginx: the JSON nginx serves comes back, and the API saw the
    gateway as its caller."""
    d = enterprise.deployment()
    t = d.topology
    client = d.x509_context("upstream-client")
    gateway = t.workload("security-gateway")
    svid = next(s for s in client.svids if str(s.spiffe_id) == t.workload("upstream-client")
                .spiffe_id)  # fmt: skip
    context = mtls_client_context(svid, client.get_bundle_set(),
                                  authorize_id(SpiffeId.parse(gateway.spiffe_id)))  # fmt: skip
    address = d.workload_address("security-gateway")
    assert address is not None
    with mtls_urlopen(f"{address.url}/inventory", context, timeout=15) as resp:
        body = json.loads(resp.read())
    assert body["caller"] == gateway.spiffe_id
    assert body["inventory"]["service"] == "inventory"
    assert [i["sku"] for i in body["inventory"]["items"]] == ["INV-1001", "INV-1002", "INV-2001"]


def test_catalog_nginx_serves_the_helpers_svid_files_and_reloads_without_restart(
    enterprise: Deploy,
) -> None:
    """catalog is nginx terminating mTLS with the files the files-mode helper writes; the
    helper's /ready names the SVID; SIGHUP (what the helper sends on rotation, to the pid
    in nginx.pid) reloads nginx with the same master pid, still serving."""
    d = enterprise.deployment()
    t = d.topology
    (svid_sidecar,) = t.workload("catalog").sidecars
    assert svid_sidecar.status_port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{svid_sidecar.status_port}/ready",
                                timeout=5) as resp:  # fmt: skip
        ready = json.loads(resp.read())
    assert ready["spiffe_id"] == t.workload("catalog").spiffe_id and ready["ready"]
    files = d.sidecar_files("catalog")
    pid = int(files["nginx.pid"][0].split()[0])
    served = d.x509_context("catalog").svids
    assert any(s.cert_chain_pem() == files["svid.pem"][0] for s in served)

    def items() -> dict:
        caller = d.x509_context("security-gateway")
        svid = next(s for s in caller.svids
                    if str(s.spiffe_id) == t.workload("security-gateway").spiffe_id)
        context = mtls_client_context(svid, caller.get_bundle_set(), authorize_id(
            SpiffeId.parse(t.workload("catalog").spiffe_id)))  # fmt: skip
        address = d.workload_address("catalog")
        assert address is not None
        with mtls_urlopen(f"{address.url}/items", context, timeout=10) as resp:
            return json.loads(resp.read())

    assert items()["service"] == "catalog"
    os.kill(pid, signal.SIGHUP)
    time.sleep(1.0)
    assert pid_alive(pid) and int(d.sidecar_files("catalog")["nginx.pid"][0].split()[0]) == pid
    assert items()["service"] == "catalog"


def test_the_plain_http_job_reaches_the_api_through_its_client_sidecar(
    enterprise: Deploy,
) -> None:
    """api-poller speaks plain HTTP to 127.0.0.1; its client sidecar carries each request to
    enterprise-api over mTLS, and the API logs the poller's SPIFFE ID as the peer."""
    logs = enterprise.state_dir / "logs"
    poller_id = enterprise.deployment().topology.workload("api-poller").spiffe_id

    def served() -> bool:
        api_log = (logs / "enterprise-api.log").read_text()
        return (" -> 200 in " in (logs / "api-poller.log").read_text()
                and f"peer={poller_id} method=GET path=/health" in api_log)

    deadline = time.monotonic() + 20
    while not served() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert served(), (logs / "api-poller.log").read_text()[-500:]


def test_status_shows_the_sidecar_with_its_own_svid(enterprise: Deploy) -> None:
    rows = {r["name"]: r for r in json.loads(enterprise.run("status", "--output", "json").stdout)}
    row = rows[INVENTORY_TLS]
    assert row["kind"] == "sidecar" and row["healthy"] and row["pid"], row
    assert rows["inventory"]["pid"] != row["pid"]  # its own process beside the app
    # the expiry shown is that of the chain the sidecar presents on its port
    address = enterprise.deployment().workload_address("inventory")
    assert address is not None
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((address.host, address.port), timeout=5) as raw, \
            tls.wrap_socket(raw) as conn:
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    presented = x509.load_der_x509_certificate(der)
    assert row["svid_expires_at"] == int(presented.not_valid_after_utc.timestamp())
    uris = presented.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://downstream.example.org/ns/downstream-workloads/sa/inventory"]


def test_status_without_svids_says_the_same_of_what_runs(enterprise: Deploy) -> None:
    """`verify` asks `status(svids=False)`: the same rows, running and healthy alike, with
    no expiry read (each one a Workload API call as a workload, on Kubernetes an exec)."""
    d = enterprise.deployment()
    full = {(r.kind, r.name): r for r in d.status()}
    bare = {(r.kind, r.name): r for r in d.status(svids=False)}
    assert set(bare) == set(full)
    assert {k: (r.running, r.healthy, r.pid) for k, r in bare.items()} == \
        {k: (r.running, r.healthy, r.pid) for k, r in full.items()}
    assert all(r.svid_expires_at is None for r in bare.values())
    assert full[("workload", "enterprise-api")].svid_expires_at is not None
    assert full[("sidecar", INVENTORY_TLS)].svid_expires_at is not None


def test_second_up_changes_nothing(enterprise: Deploy) -> None:
    d = enterprise.deployment()
    before_pids = {n: s.pid for n, s in d.supervisor.states().items()}
    with d.server(DOWNSTREAM) as c:
        before_entries = sorted((e.id, e.revision_number) for e in c.list_entries())
        before_bundle = c.get_bundle()
    enterprise.up("--no-verify")
    after_pids = {n: s.pid for n, s in d.supervisor.states().items()}
    with d.server(DOWNSTREAM) as c:
        after_entries = sorted((e.id, e.revision_number) for e in c.list_entries())
        after_bundle = c.get_bundle()
    assert after_pids == before_pids  # no process restarted
    assert after_entries == before_entries  # no entry re-created or updated
    assert after_bundle.x509_authorities == before_bundle.x509_authorities


def test_settings_stick_a_plan_without_flags_says_no_changes(enterprise: Deploy) -> None:
    """`up --port-base N` was given once; every later command leaves it out."""
    plan = enterprise.run("plan", "--output", "json")
    body = json.loads(plan.stdout)
    assert plan.returncode == 0, body["changes"]
    assert body["changes"] == [] and body["notes"] == [], body
    # `up` without the flag keeps the ports too: nothing restarts, nothing moves
    d = enterprise.deployment()
    before = {n: s.pid for n, s in d.supervisor.states().items()}
    again = enterprise.run("up", "--no-verify", check=True)
    assert "no changes" in again.stdout, again.stdout
    assert {n: s.pid for n, s in d.supervisor.states().items()} == before
    assert d.record.port_base == enterprise.port_base


def test_a_changed_setting_shows_in_the_plan_as_what_changes_and_why(enterprise: Deploy) -> None:
    other = enterprise.port_base + 500
    plan = enterprise.run("plan", "--port-base", str(other), "--output", "json")
    body = json.loads(plan.stdout)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    first = body["changes"][0]
    assert (first["action"], first["kind"], first["name"]) == ("update", "setting", "port-base")
    assert f"{enterprise.port_base} -> {other}" in first["detail"]
    assert any(c["kind"] == "config" for c in body["changes"]), body["changes"]
    # a plan writes nothing: the recorded base is unchanged
    assert enterprise.deployment().record.port_base == enterprise.port_base


def test_the_topology_is_taken_from_the_state_directory(enterprise: Deploy) -> None:
    status = enterprise.run("status", "--output", "json")
    assert status.returncode == 0, status.stderr
    wrong = enterprise.run("plan", "--topology", "nested")
    assert wrong.returncode != 0 and "belongs to topology 'enterprise'" in wrong.stderr


def test_killed_agent_is_restarted_by_the_supervisor_with_the_reason_logged(
    enterprise: Deploy,
) -> None:
    d = enterprise.deployment()
    name = agent_component("downstream-agent-2")
    pid = d.supervisor.states()[name].pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = d.supervisor.states()[name]
        if state.pid and state.pid != pid:
            break
        time.sleep(0.1)
    assert state.pid != pid and state.last_exit == "was killed by SIGKILL"
    assert "downstream-agent-2" in d.supervisor.log_path.read_text()
    report = wait_for_green(enterprise)
    assert report.ok, failed_ids(report)


def test_agent_down_turns_its_checks_red_and_up_heals_it(enterprise: Deploy) -> None:
    d = enterprise.deployment()
    # Without the supervisor (as after a crash of the whole host) nothing restarts it.
    os.kill(d.supervisor.pid, signal.SIGKILL)
    agent_pid = d.supervisor.states()[agent_component("downstream-agent-1")].pid
    os.kill(agent_pid, signal.SIGKILL)
    while pid_alive(agent_pid):
        time.sleep(0.05)

    try:
        report = enterprise.verify()
        red = failed_ids(report)
        assert {"supervisor", "agent-live:downstream-agent-1"} <= red
        assert "workload-svid:enterprise-api" in red  # enterprise-api lives on that agent
        # its SVIDs cannot be observed, so which authority they come from cannot be told
        assert f"authority-svids:{DOWNSTREAM}" in red
        # Prometheus sees the agent's telemetry down (and may already alert on it)
        assert "downstream-agent-1" in report.get("monitoring-targets").detail
        allowed = {
            "supervisor", "agent-live:downstream-agent-1", f"authority-svids:{DOWNSTREAM}",
            "monitoring-targets", "monitoring-alerts",
        } | involving(report, "enterprise-api")  # fmt: skip
        assert red <= allowed, red - allowed
    finally:
        enterprise.up()
    report = wait_for_green(enterprise)
    assert report.ok, {c.id: c.detail for c in report.failed}


def test_entry_deleted_behind_our_back_is_caught_and_restored(enterprise: Deploy) -> None:
    d = enterprise.deployment()
    with d.server(DOWNSTREAM) as c:
        victim = next(e for e in c.list_entries() if e.spiffe_id.path.endswith("/data-processor"))
    server = d.topology.server(DOWNSTREAM)
    # SPIRE's own CLI does the deleting, as an operator would
    import subprocess

    subprocess.run(
        [str(d.binaries.server), "entry", "delete", "-entryID", victim.id,
         "-socketPath", d.paths.server_socket(server.name)],
        check=True, capture_output=True,
    )  # fmt: skip

    try:
        report = enterprise.verify()
        red = failed_ids(report)
        assert f"entries:{DOWNSTREAM}" in red
        assert "create" in report.get(f"entries:{DOWNSTREAM}").detail
        allowed = {f"entries:{DOWNSTREAM}", f"authority-svids:{DOWNSTREAM}"} | involving(
            report, "data-processor"
        )
        # enterprise-api's health probe calls as data-processor (run.health.caller): once its
        # agent dropped the SVID, that probe has no caller identity
        probes = [(w.name, w.run.health) for w in d.topology.workloads if w.run]
        allowed |= {f"workload-health:{name}" for name, probe in probes
                    if probe and probe.caller == "data-processor"}  # fmt: skip
        assert red <= allowed, red - allowed
    finally:
        enterprise.up()
    report = wait_for_green(enterprise)
    assert report.ok, {c.id: c.detail for c in report.failed}
    with d.server(DOWNSTREAM) as c:
        assert c.get_entry(victim.id).spiffe_id == victim.spiffe_id  # same owned ID


def test_federated_bundle_deleted_on_one_server_is_caught_and_restored(
    enterprise: Deploy,
) -> None:
    d = enterprise.deployment()
    with d.server(DOWNSTREAM) as c:
        c.delete_federated_bundles(["enterprise-root.org"], mode="dissociate").raise_for_errors()

    try:
        report = enterprise.verify()
        red = failed_ids(report)
        assert f"federated-bundle:{DOWNSTREAM}->enterprise-root.org" in red
        copy_check = report.get(f"authority-copy:{DOWNSTREAM}->enterprise-root.org")
        assert not copy_check.ok and "holds no copy" in copy_check.detail
        # dissociating also strips federates_with from our entries (an entry change), and
        # cross-domain calls may fail once the agents drop the federated bundle; with the
        # local target's 1 s agent sync the changed entries reach the agents within this
        # verify, so the SVIDs of exactly those workloads (and the workloads' own
        # end-to-end probes) may be caught mid re-issue
        changed = {
            w.name for w in d.topology.workloads
            if d.topology.agent(w.agent).server == DOWNSTREAM and w.federates_with
        }  # fmt: skip
        allowed = (
            {
                f"federated-bundle:{DOWNSTREAM}->enterprise-root.org",
                f"entries:{DOWNSTREAM}",
                f"authority-copy:{DOWNSTREAM}->enterprise-root.org",
                f"authority-svids:{DOWNSTREAM}",
            }
            | {c.id for c in report.checks if c.id.startswith(("mtls", "jwt", "workload-health:"))}
            | {f"workload-svid:{name}" for name in changed}
        )
        assert red <= allowed, {c.id: c.detail for c in report.failed if c.id not in allowed}
        assert not any(i.startswith("federated-bundle:" + UPSTREAM) for i in red)
    finally:
        enterprise.up()
    report = wait_for_green(enterprise)
    assert report.ok, {c.id: c.detail for c in report.failed}


def test_server_killed_comes_back_with_entries_and_ca_intact(enterprise: Deploy) -> None:
    d = enterprise.deployment()
    with d.server(DOWNSTREAM) as c:
        entries_before = sorted((e.id, str(e.spiffe_id)) for e in c.list_entries())
        bundle_before = c.get_bundle().x509_authorities
    os.kill(d.supervisor.pid, signal.SIGKILL)
    server_pid = d.supervisor.states()[server_component(DOWNSTREAM)].pid
    os.kill(server_pid, signal.SIGKILL)
    while pid_alive(server_pid):
        time.sleep(0.05)

    try:
        red = failed_ids(enterprise.verify())
        assert f"server-live:{DOWNSTREAM}" in red and f"datastore:{DOWNSTREAM}" in red
        assert f"server-live:{UPSTREAM}" not in red and f"datastore:{UPSTREAM}" not in red
    finally:
        enterprise.up()
    report = wait_for_green(enterprise)
    assert report.ok, {c.id: c.detail for c in report.failed}
    with d.server(DOWNSTREAM) as c:
        assert sorted((e.id, str(e.spiffe_id)) for e in c.list_entries()) == entries_before
        assert c.get_bundle().x509_authorities == bundle_before


def test_down_leaves_no_process_and_no_port() -> None:
    state = short_tempdir("sf-e2e-down-") / "state"
    deploy = Deploy(state, free_port_base())
    try:
        deploy.up("--no-verify")
    except BaseException:
        deploy.run("down", "--purge")
        raise
    d = deploy.deployment()
    pids = [s.pid for s in d.supervisor.states().values()] + [d.supervisor.pid]
    ports = [p for _, p, _ in d._ports()]
    assert all(pids)

    result = deploy.run("down", check=True)

    assert "stopped" in result.stdout
    assert not any(pid_alive(p) for p in pids)
    assert not [p for p in ports if is_listening(p)]  # no listener left (TIME_WAIT is fine)
    assert (state / "state.json").exists()  # state kept without --purge
    deploy.run("down", "--purge", check=True)
    assert not state.exists()
