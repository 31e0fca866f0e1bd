"""The three examples as services, on the enterprise topology brought up by `deploy up`.

Real SPIRE, real processes started by the supervisor. External clients are the real `curl`
binary (verifying the gateway by DNS name against `deploy trust-anchor`); SPIFFE clients
are this test process holding SVIDs from the deployment's own agents.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from drill.sidecar_load import SidecarLoad
from spire_fabric.examples._http import ConnectionPool

from spire_fabric.runtime.local import LocalDeployment
from spire_fabric.runtime.local.context import workload_component
from spire_fabric.runtime.local.sidecars import sidecar_component
from spire_fabric.testing import short_tempdir
from spire_fabric.tls import authorize_id, mtls_client_context, tls_client_context
from spire_fabric.topology import dump_topology, preset
from spire_fabric.workload import JwtSource, X509Source, pick_by_id

from .conftest import Deploy, free_port_base

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")

TD_DOWN = "downstream.example.org"
UPSTREAM_CLIENT = "spiffe://enterprise-root.org/ns/upstream-workloads/sa/upstream-client"
API = f"spiffe://{TD_DOWN}/ns/downstream-workloads/sa/enterprise-api"
PROCESSOR = f"spiffe://{TD_DOWN}/ns/downstream-workloads/sa/data-processor"
GATEWAY = f"spiffe://{TD_DOWN}/ns/downstream-workloads/sa/security-gateway"
GATEWAY_DNS = "security-gateway.downstream-workloads.svc"  # first DNS SAN of its entry
AGENT_OF = {
    UPSTREAM_CLIENT: "upstream-agent",
    API: "downstream-agent-1",
    PROCESSOR: "downstream-agent-2",
    GATEWAY: "downstream-agent-3",
}


@dataclass
class Services:
    deploy: Deploy
    anchor: Path
    sources: dict[str, X509Source]

    @property
    def gateway_port(self) -> int:
        return self.deploy.port_base - 31000 + 30080

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.deploy.port_base - 31000 + 30443}"

    def issue_key(self, client: str, *routes: str, rate: float = 100, burst: int = 100) -> str:
        # through the deployment (its managed file), as a user does on either target
        argv = [sys.executable, "-m", "spire_fabric.examples.security_gateway", "issue-key",
                "--state-dir", str(self.deploy.state_dir), "--client", client,
                "--rate", str(rate), "--burst", str(burst)]  # fmt: skip
        for route in routes:
            argv += ["--route", route]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()

    def curl(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: object = None,
        extra: tuple[str, ...] = (),
    ) -> tuple[int, dict[str, str], object]:
        """One request with the real curl, verifying the gateway by its DNS name."""
        argv = ["curl", "-sS", "--cacert", str(self.anchor), "-X", method, "-D", "-",
                "--resolve", f"{GATEWAY_DNS}:{self.gateway_port}:127.0.0.1",
                f"https://{GATEWAY_DNS}:{self.gateway_port}{path}"]  # fmt: skip
        argv += extra
        if key is not None:
            argv += ["-H", f"Authorization: Bearer {key}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary",
                     body if isinstance(body, str) else json.dumps(body)]  # fmt: skip
        raw = subprocess.run(argv, check=True, capture_output=True, timeout=30).stdout
        out = raw.decode()  # not text=True: that would turn the CRLFs of the headers into LFs
        head, _, payload = out.partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        return status, headers, json.loads(payload) if payload.strip() else None

    def pool(self, who: str, url: str, server_id: str, **kw: float) -> ConnectionPool:
        source = self.sources[who]
        return ConnectionPool(url, mtls_client_context(source, source, authorize_id(server_id)),
                              **kw)  # fmt: skip

    def call(self, who: str, method: str, url: str, server_id: str, body: object = None,
             headers: dict[str, str] | None = None) -> tuple[int, object]:  # fmt: skip
        with self.pool(who, url, server_id) as pool:
            data = json.dumps(body).encode() if body is not None else None
            answer = pool.request(method, "", data, headers)
            return answer.status, json.loads(answer.body)

    def log(self, component: str) -> str:
        return (self.deploy.state_dir / "logs" / f"{component}.log").read_text(errors="replace")


def _sources(deploy: Deploy) -> dict[str, X509Source]:
    d = deploy.deployment()
    return {
        spiffe_id: X509Source(
            endpoint=d.agent_endpoint(agent), picker=pick_by_id(spiffe_id), first_update_timeout=30
        )
        for spiffe_id, agent in AGENT_OF.items()
    }


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    deploy = Deploy(short_tempdir("sf-svc-") / "state", free_port_base())
    sources: dict[str, X509Source] = {}
    try:
        deploy.up()
        anchor = deploy.state_dir.parent / "anchor.pem"
        deploy.run("trust-anchor", "-o", str(anchor), check=True)
        sources = _sources(deploy)
        yield Services(deploy, anchor, sources)
    finally:
        for s in sources.values():
            s.close()
        deploy.run("down", "--purge")
        shutil.rmtree(deploy.state_dir.parent, ignore_errors=True)


def _expected_totals(records: list[dict]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for r in records:
        totals[r["region"]] = round(totals.get(r["region"], 0.0) + r["balance"], 2)
    return totals


def test_external_client_with_an_api_key_creates_and_reads_a_record_with_curl(
    services: Services,
) -> None:
    key = services.issue_key("alice", "GET /records", "GET /records/*", "POST /records",
                             rate=2, burst=4)  # fmt: skip
    status, _, created = services.curl(
        "POST", "/records", key=key, body={"customer": "Hooli", "region": "us-west",
                                           "balance": 42.5})  # fmt: skip
    assert status == 201, created
    assert created["customer"] == "Hooli" and created["created_by"] == GATEWAY
    status, _, read = services.curl("GET", f"/records/{created['id']}", key=key)
    assert (status, read) == (200, created)

    status, _, body = services.curl("GET", "/records")
    assert status == 401 and "no credentials" in body["reason"]
    status, _, body = services.curl("GET", "/records", key=key[:-6] + "000000")
    assert status == 401 and body["reason"] == "unknown API key"
    status, _, body = services.curl("GET", "/results", key=key)
    assert status == 403 and "not among the client's routes" in body["reason"]
    status, _, body = services.curl("POST", "/records", key=key, body="{not json")
    assert status == 400 and "not JSON" in body["reason"]
    # the allow-list compares paths as text, so un-normalized paths are refused
    status, _, body = services.curl("GET", "/records/../results", key=key,
                                    extra=("--path-as-is",))  # fmt: skip
    assert status == 400 and "normalized" in body["reason"]

    statuses = []
    for _ in range(8):
        status, headers, _ = services.curl("GET", "/records", key=key)
        statuses.append(status)
        if status == 429:
            assert int(headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429, statuses

    audit = services.log("security-gateway")
    for line in ("client=alice auth=apikey method=POST route=/records decision=allow",
                 "client=alice auth=apikey method=GET route=/results decision=deny",
                 "decision=deny reason=\"over 2 requests/s\" status=429"):  # fmt: skip
        assert line in audit


def test_upstream_spiffe_client_reads_through_the_gateway_and_is_refused_on_create(
    services: Services,
) -> None:
    gateway = f"https://127.0.0.1:{services.gateway_port}/records"
    status, body = services.call(UPSTREAM_CLIENT, "GET", gateway, GATEWAY)
    assert status == 200 and body["caller"] == GATEWAY and len(body["records"]) >= 3
    status, body = services.call(UPSTREAM_CLIENT, "POST", gateway, GATEWAY,
                                 {"customer": "Evil", "region": "x", "balance": 1})  # fmt: skip
    assert status == 403 and "not among the client's routes" in body["reason"]


def test_external_client_with_a_jwt_svid_of_the_other_trust_domain_reads(
    services: Services,
) -> None:
    d = services.deploy.deployment()
    with JwtSource(endpoint=d.agent_endpoint("upstream-agent")) as jwt:
        svid = jwt.fetch_jwt_svid(GATEWAY, subject=UPSTREAM_CLIENT)
    token = svid.token
    # the server names itself as issuer (server.conf jwt_issuer); the gateway accepts it
    assert svid.claims["iss"] == "https://enterprise-root.org"
    # no client certificate: the token is the identity
    context = tls_client_context(services.sources[UPSTREAM_CLIENT], authorize_id(GATEWAY))
    with ConnectionPool(f"https://127.0.0.1:{services.gateway_port}", context) as pool:
        answer = pool.request("GET", "/records", headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 200, answer.body
    assert f"client={UPSTREAM_CLIENT} auth=jwt" in services.log("security-gateway")


def test_enterprise_api_authorizes_every_route_by_its_table(services: Services) -> None:
    records = services.api_url + "/records"
    new = {"customer": "Direct", "region": "eu-west", "balance": 1.0}
    # enterprise-root.org identities read, and are refused on writes
    status, body = services.call(UPSTREAM_CLIENT, "GET", records, API)
    assert status == 200 and body["caller"] == UPSTREAM_CLIENT
    status, body = services.call(UPSTREAM_CLIENT, "POST", records, API, new)
    assert status == 403 and body["route"] == "records.create"
    assert "does not hold role 'create'" in body["reason"]
    # a same-trust-domain identity that the table does not name gets nothing but /health
    status, body = services.call(API, "GET", records, API)
    assert status == 403 and "does not hold role 'read'" in body["reason"]
    status, body = services.call(API, "GET", services.api_url + "/health", API)
    assert status == 200
    # data-processor may post results only with a JWT-SVID for the API's audience
    result = {"through_id": 0, "record_ids": [], "totals": {}}
    status, body = services.call(PROCESSOR, "POST", services.api_url + "/results", API, result)
    assert status == 401 and "JWT-SVID" in body["reason"]
    status, body = services.call(PROCESSOR, "POST", records, API, new)
    assert status == 403
    # malformed bodies are 400 with a reason, never a stack trace
    d = services.deploy.deployment()
    with JwtSource(endpoint=d.agent_endpoint("downstream-agent-2")) as jwt:
        token = jwt.fetch_jwt_svid(API, subject=PROCESSOR).token
    bad = {"through_id": "x"}
    auth = {"Authorization": f"Bearer {token}"}
    status, body = services.call(PROCESSOR, "POST", services.api_url + "/results", API, bad, auth)
    assert status == 400 and "through_id" in body["reason"]

    log = services.log("enterprise-api")
    assert (
        f"peer={UPSTREAM_CLIENT} method=POST path=/records route=records.create outcome=deny" in log
    )
    assert f"peer={API} method=GET path=/records route=records.list outcome=deny" in log
    assert "Traceback" not in log


def test_processor_results_match_the_records_including_one_created_now(
    services: Services,
) -> None:
    key = services.issue_key("bob", "POST /records", rate=10, burst=10)
    status, _, created = services.curl(
        "POST", "/records", key=key, body={"customer": "Pied Piper", "region": "eu-west",
                                           "balance": 1000.25})  # fmt: skip
    assert status == 201
    deadline = time.monotonic() + 30  # the preset's processor runs every 5 s
    while True:
        _, body = services.call(UPSTREAM_CLIENT, "GET", services.api_url + "/results", API)
        latest = next((r for r in body["results"] if r["posted_by"] == PROCESSOR), None)
        if latest and latest["through_id"] >= created["id"]:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    _, body = services.call(UPSTREAM_CLIENT, "GET", services.api_url + "/records", API)
    upto = [r for r in body["records"] if r["id"] <= latest["through_id"]]
    assert latest["totals"] == _expected_totals(upto)
    assert "Pied Piper" in {r["customer"] for r in upto}


def test_killed_api_makes_the_gateway_answer_503_until_the_supervisor_restarts_it(
    services: Services,
) -> None:
    key = services.issue_key("carol", "GET /records", rate=1000, burst=1000)
    status, _, before = services.curl("GET", "/records", key=key)
    assert status == 200
    d = services.deploy.deployment()
    name = workload_component("enterprise-api")
    pid = d.supervisor.states()[name].pid
    os.kill(pid, signal.SIGKILL)
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _headers, body = services.curl("GET", "/records", key=key)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == 200 and 503 in seen:
            break
        time.sleep(0.05)
    assert 503 in seen and seen[-1] == 200, seen
    assert d.supervisor.states()[name].pid != pid
    # the records survived the restart (SQLite in the workload's own directory)
    assert body["records"] == before["records"]
    assert "event=upstream-failed status=503" in services.log("security-gateway")


# -- rotation --------------------------------------------------------------------------

SHORT_TTL = timedelta(seconds=20)
# the sidecars' workloads rotate too: inventory's server sidecar, api-poller's client
# sidecar, catalog's files-mode helper (and the nginx it reloads)
SIDECAR_WORKLOADS = ("inventory", "api-poller", "catalog")


def _short_ttl_topology(path: Path) -> Path:
    """The enterprise preset with 20 s X.509-SVIDs for the three services and the three
    sidecar workloads (the agent rotates at half-life) and connections retired after 3 s,
    so traffic crosses rotations on connections old and new; api-poller calls through its
    client sidecar every 0.2 s, each call a new connection."""
    t = preset("enterprise")
    extra = {
        "enterprise-api": ("--max-connection-age", "3"),  # its pool to inventory's sidecar
        "data-processor": ("--interval", "0.5", "--max-connection-age", "3"),
        "security-gateway": ("--max-connection-age", "3"),
        "api-poller": ("--interval", "0.2"),
    }
    workloads = []
    for w in t.workloads:
        if w.name in ("enterprise-api", "data-processor", "security-gateway",
                      *SIDECAR_WORKLOADS):  # fmt: skip
            assert w.run is not None
            run = dataclasses.replace(w.run, args=(*w.run.args, *extra.get(w.name, ())))
            w = dataclasses.replace(w, x509_svid_ttl=SHORT_TTL, jwt_svid_ttl=timedelta(minutes=1),
                                    run=run)  # fmt: skip
        workloads.append(w)
    path.write_text(dump_topology(dataclasses.replace(t, workloads=tuple(workloads))))
    return path


def _children(pid: int) -> set[int]:
    """The pids of a process's children (Linux: /proc/<pid>/task/<pid>/children)."""
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _nginx_master(d: LocalDeployment, workload: str) -> int:
    """nginx's master pid: the only child of the workload's launcher (examples.inventory)."""
    launcher = d.supervisor.states()[workload_component(workload)].pid
    assert launcher is not None, f"{workload} is not running"
    (master,) = _children(launcher)
    return master


def test_traffic_crosses_two_rotations_of_every_svid_with_zero_failures() -> None:
    """Every service and every sidecar path under continuous traffic over at least two
    rotations of each SVID: no request fails, no nginx restarts (same master pid), and
    catalog's nginx is reloaded by the helper (new workers, a new served certificate)."""
    tmp = short_tempdir("sf-rot-")
    deploy = Deploy(tmp / "state", free_port_base())
    counts = {"gateway_ok": 0, "gateway_failed": 0}
    failures: list[str] = []
    stop = threading.Event()
    watched: dict[str, X509Source] = {}
    sidecars: SidecarLoad | None = None
    try:
        deploy.up("--topology", str(_short_ttl_topology(tmp / "topology.yaml")))
        anchor = tmp / "anchor.pem"
        deploy.run("trust-anchor", "-o", str(anchor), check=True)
        services = Services(deploy, anchor, {})
        key = services.issue_key("load", "GET /records", rate=10000, burst=10000)
        d = deploy.deployment()
        watched.update({w: X509Source(endpoint=d.agent_endpoint(AGENT_OF[w]),
                                      picker=pick_by_id(w))
                        for w in (API, PROCESSOR, GATEWAY)})  # fmt: skip
        serials: dict[str, set[int]] = {w: set() for w in watched}

        def drive() -> None:
            import ssl

            context = ssl.create_default_context(cafile=str(anchor))
            context.check_hostname = False  # connecting by IP; the chain is what matters
            with ConnectionPool(f"https://127.0.0.1:{services.gateway_port}", context,
                                max_age=2) as pool:  # fmt: skip
                while not stop.is_set():
                    try:
                        answer = pool.request(
                            "GET", "/records", headers={"Authorization": f"Bearer {key}"}
                        )
                        ok = answer.status == 200
                    except Exception as e:
                        ok, answer = False, e  # type: ignore[assignment]
                    if ok:
                        counts["gateway_ok"] += 1
                    else:
                        counts["gateway_failed"] += 1
                        failures.append(repr(getattr(answer, "body", answer))[:200])
                    time.sleep(0.02)

        # nginx of inventory (TLS by its sidecar) and of catalog (TLS from the helper's
        # files), and every process of the sidecar workloads, before the rotations
        masters = {w: _nginx_master(d, w) for w in ("inventory", "catalog")}
        inventory_workers = _children(masters["inventory"])
        catalog_workers: set[int] = set()
        components = [workload_component(w) for w in SIDECAR_WORKLOADS]
        components += [sidecar_component(w, s.name) for w in SIDECAR_WORKLOADS
                       for s in d.topology.workload(w).sidecars]  # fmt: skip
        pids = {c: d.supervisor.states()[c].pid for c in components}
        # the processor's and the poller's requests from here on: before `up` returned they
        # may have started before the API listened, which is start-up, not rotation
        logs = deploy.state_dir / "logs"
        offsets = {w: len((logs / f"{w}.log").read_text()) for w in ("data-processor",
                                                                       "api-poller")}
        sidecars = SidecarLoad(d)
        sidecars.start()
        threads = [threading.Thread(target=drive, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        started = time.monotonic()
        deadline = started + 120
        while time.monotonic() < deadline:
            for w, s in watched.items():
                serials[w].add(s.get_x509_svid().leaf.serial_number)
            catalog_workers |= _children(masters["catalog"])
            # three serials each = at least two rotations of every SVID
            if (all(len(s) >= 3 for s in serials.values())
                    and all(n >= 2 for n in sidecars.rotations().values())):  # fmt: skip
                break
            time.sleep(0.5)
        # and on past the expiry of the first certificate each sidecar path used
        until = max(sidecars.first_expiry().values(), default=0.0) + 1  # epoch seconds
        while time.time() < until and time.monotonic() < deadline + 30:
            time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(10)
        report = sidecars.stop()
        ended = time.time()
        for s in watched.values():
            s.close()
        catalog_workers |= _children(masters["catalog"])
        processor_log = (logs / "data-processor.log").read_text()[offsets["data-processor"]:]
        cycles_ok = processor_log.count("event=cycle") - processor_log.count("outcome=FAILED")
        cycles_failed = processor_log.count("outcome=FAILED")
        poller_log = (logs / "api-poller.log").read_text()[offsets["api-poller"]:]
        poller_lines = [line for line in poller_log.splitlines() if " -> " in line]
        poller_failed = [line for line in poller_lines if " -> 200 in " not in line]
        print(f"rotation: serials seen {[len(s) for s in serials.values()]}, gateway requests "
              f"ok={counts['gateway_ok']} failed={counts['gateway_failed']}, processor cycles "
              f"ok={cycles_ok} failed={cycles_failed}")  # fmt: skip
        print(f"rotation, sidecars: {report.summary()}; rotations per path "
              f"{sidecars.rotations()}; api-poller requests ok="
              f"{len(poller_lines) - len(poller_failed)} failed={len(poller_failed)}; catalog "
              f"nginx workers seen {len(catalog_workers)}; "
              f"{time.monotonic() - started:.1f} s")  # fmt: skip
        assert all(len(s) >= 3 for s in serials.values()), serials
        assert counts["gateway_failed"] == 0, failures[:5]
        assert counts["gateway_ok"] > 100
        failed_lines = [line for line in processor_log.splitlines() if "FAILED" in line]
        assert cycles_failed == 0 and cycles_ok >= 10, failed_lines or processor_log[-2000:]

        # the sidecar paths: two rotations each, traffic past the expiry of the first
        # certificate each one used (a sidecar that kept it would have failed), no failure
        assert all(n >= 2 for n in sidecars.rotations().values()), sidecars.serials
        expired = sidecars.first_expiry()
        assert set(expired) == set(sidecars.rotations())
        assert all(at < ended for at in expired.values()), (expired, ended)
        assert report.failures == 0, report.reasons()
        assert all(f.requests >= 50 for f in report.flows.values()), report.summary()
        assert not poller_failed and len(poller_lines) >= 20, poller_failed[:5] or poller_log
        # nginx never restarted; inventory's never even reloaded (its sidecar does the TLS);
        # catalog's reloaded by SIGHUP: a new worker per reload, same master
        assert {w: _nginx_master(d, w) for w in masters} == masters
        assert _children(masters["inventory"]) == inventory_workers
        assert len(catalog_workers) >= 3, catalog_workers
        assert {c: d.supervisor.states()[c].pid for c in components} == pids
    finally:
        stop.set()  # whatever failed, no thread or Workload API stream outlives the test
        if sidecars is not None:
            sidecars.stop()
        for source in watched.values():
            source.close()
        deploy.run("down", "--purge")
        shutil.rmtree(tmp, ignore_errors=True)
