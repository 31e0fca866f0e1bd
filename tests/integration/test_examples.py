"""The three example workloads, run as processes against two real, federated SPIRE domains.

Like the enterprise design: `enterprise-root.org` has one agent for `upstream-client`;
`downstream.example.org` has one agent per workload (enterprise-api, data-processor,
security-gateway). Every entry selects `unix:uid:<our uid>`, so what tells the workloads
apart is which agent's socket a process is given in `SPIFFE_ENDPOINT_SOCKET`. This test
process talks to the examples as `upstream-client` (upstream agent) and as `data-processor`
(its agent), over the same public API the examples use.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from integration.tls._federated import wait_for
from spire_fabric.identity import TrustDomain
from spire_fabric.testing import SpireAgentProcess, SpireServerProcess, current_uid_selector
from spire_fabric.tls import authorize_id, mtls_client_context, mtls_urlopen, tls_client_context
from spire_fabric.workload import WorkloadApiClient, X509Source

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_TD = TrustDomain("enterprise-root.org")
DOWNSTREAM_TD = TrustDomain("downstream.example.org")
UPSTREAM_CLIENT = "spiffe://enterprise-root.org/ns/upstream-workloads/sa/upstream-client"
ENTERPRISE_API = "spiffe://downstream.example.org/ns/downstream-workloads/sa/enterprise-api"
DATA_PROCESSOR = "spiffe://downstream.example.org/ns/downstream-workloads/sa/data-processor"
SECURITY_GATEWAY = "spiffe://downstream.example.org/ns/downstream-workloads/sa/security-gateway"
API_SVID_TTL = 20  # seconds: the agent rotates at half-life, so the API rotates under test
# The enterprise preset's authorization table for enterprise-api
API_GRANTS = (
    "--grant", f"read={SECURITY_GATEWAY}", "--grant", f"create={SECURITY_GATEWAY}",
    "--grant", f"read={DATA_PROCESSOR}", "--grant", f"report={DATA_PROCESSOR}",
    "--grant", f"read={UPSTREAM_TD.name}",
)  # fmt: skip


class Example:
    """One example run as `python -m examples.<module>` from the repo root; output to a file.

    Stops exactly the process it started (SIGTERM, then SIGKILL if it hangs).
    """

    def __init__(self, module: str, endpoint: str, args: list[str], log_dir: Path) -> None:
        self.module = module
        self.log_path = log_dir / f"{module}-{time.monotonic_ns()}.log"
        env = {**os.environ, "SPIFFE_ENDPOINT_SOCKET": endpoint}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"examples.{module}", *args],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of `pattern` in the output, failing early if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                pytest.fail(f"{self.module} exited ({self.proc.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.module}: no {pattern!r} in {timeout:.0f}s:\n{self.output()}")
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"{self.module} still running after {timeout:.0f}s:\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


@dataclass
class World:
    downstream: SpireServerProcess
    agents: dict[str, SpireAgentProcess]
    api: Example
    api_url: str
    gateway: Example
    gateway_url: str
    as_upstream_client: X509Source
    as_data_processor: X509Source
    log_dir: Path

    def start(self, module: str, agent: str, *args: str) -> Example:
        return Example(module, self.agents[agent].endpoint, list(args), self.log_dir)


def _svid_with_both_bundles(agent: SpireAgentProcess, spiffe_id: str) -> X509Source:
    """A source for `spiffe_id` once the agent also hands out the federated bundle, as a
    deployed workload would find it (federation is bootstrapped before the examples run)."""
    source = X509Source(endpoint=agent.endpoint, first_update_timeout=60)
    try:
        wait_for(
            lambda: (
                str(source.get_x509_svid().spiffe_id) == spiffe_id
                and all(
                    source.get_x509_bundle_for_trust_domain(td)
                    for td in (UPSTREAM_TD, DOWNSTREAM_TD)
                )
            ),
            60,
            f"{spiffe_id} with the bundles of both trust domains",
        )
    except BaseException:
        source.close()
        raise
    return source


@pytest.fixture(scope="module")
def world(spire_binaries, tmp_path_factory) -> Iterator[World]:
    """Both trust domains, four agents, enterprise-api and security-gateway running.

    Module-scoped (the plugin's factories are per test) because starting SPIRE twice per
    test would dominate the run; teardown stops exactly what this fixture started.
    """
    log_dir = tmp_path_factory.mktemp("examples")
    with contextlib.ExitStack() as stack:

        def started(process):  # stop (and clean up after) every SPIRE process we start
            stack.callback(shutil.rmtree, process.workdir, ignore_errors=True)
            stack.callback(process.stop)
            return process.start()

        upstream = started(SpireServerProcess(spire_binaries, UPSTREAM_TD.name, federation=True))
        downstream = started(
            SpireServerProcess(spire_binaries, DOWNSTREAM_TD.name, federation=True)
        )
        upstream.federate_with(downstream)
        downstream.federate_with(upstream)
        agents = {"upstream-client": started(SpireAgentProcess(spire_binaries, upstream))}
        for name in ("enterprise-api", "data-processor", "security-gateway"):
            agents[name] = started(SpireAgentProcess(spire_binaries, downstream))

        uid = [current_uid_selector()]
        upstream.create_entry(
            UPSTREAM_CLIENT, agents["upstream-client"].spiffe_id, uid,
            federates_with=[DOWNSTREAM_TD.name],
        )  # fmt: skip
        for name, spiffe_id in (
            ("enterprise-api", ENTERPRISE_API),
            ("data-processor", DATA_PROCESSOR),
            ("security-gateway", SECURITY_GATEWAY),
        ):
            downstream.create_entry(
                spiffe_id, agents[name].spiffe_id, uid, federates_with=[UPSTREAM_TD.name],
                x509_svid_ttl=API_SVID_TTL if spiffe_id == ENTERPRISE_API else None,
            )  # fmt: skip
        as_upstream_client = _svid_with_both_bundles(agents["upstream-client"], UPSTREAM_CLIENT)
        stack.callback(as_upstream_client.close)
        as_data_processor = _svid_with_both_bundles(agents["data-processor"], DATA_PROCESSOR)
        stack.callback(as_data_processor.close)
        _svid_with_both_bundles(agents["enterprise-api"], ENTERPRISE_API).close()
        _svid_with_both_bundles(agents["security-gateway"], SECURITY_GATEWAY).close()

        api = Example(
            "enterprise_api",
            agents["enterprise-api"].endpoint,
            ["--listen", "127.0.0.1:0", *API_GRANTS, "--jwt-audience", ENTERPRISE_API,
             "--db", str(log_dir / "api.sqlite3")],
            log_dir,
        )  # fmt: skip
        stack.callback(api.stop)
        api_url = api.wait_for_line(r"listening on (https://\S+)").group(1)
        gateway = Example(
            "security_gateway",
            agents["security-gateway"].endpoint,
            ["--listen", "127.0.0.1:0", "--upstream", api_url, "--upstream-id", ENTERPRISE_API,
             "--allow-trust-domain", UPSTREAM_TD.name, "--api-keys", str(log_dir / "keys.json")],
            log_dir,
        )  # fmt: skip
        stack.callback(gateway.stop)
        gateway_url = gateway.wait_for_line(r"listening on (https://\S+)").group(1)
        yield World(
            downstream, agents, api, api_url, gateway, gateway_url,
            as_upstream_client, as_data_processor, log_dir,
        )  # fmt: skip


def get_json(
    url: str,
    source: X509Source | None,
    server_id: str,
    token: str | None = None,
    bundles: X509Source | None = None,
) -> dict:
    """GET over mTLS as ``source``, or over TLS without a client SVID (``source`` None,
    server checked with ``bundles``)."""
    if source is None:
        context = tls_client_context(bundles, authorize_id(server_id))
    else:
        context = mtls_client_context(source, source, authorize_id(server_id))
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with mtls_urlopen(request, context) as response:
        return json.load(response)


def test_data_processor_posts_totals_over_keep_alive_while_the_api_svid_rotates(
    world: World,
) -> None:
    processor = world.start(
        "data_processor", "data-processor",
        "--api", world.api_url, "--api-id", ENTERPRISE_API, "--interval", "2", "--count", "15",
        "--max-connection-age", "5",
    )  # fmt: skip
    assert processor.wait(120) == 0, processor.output()
    out = processor.output()
    cycles = re.findall(r"event=cycle cycle=\d+ outcome=ok .* connections=(\d+)", out)
    assert len(cycles) == 15, out
    assert "FAILED" not in out
    # Connections are reused (keep-alive) yet retired after 5 s, so over 30 s of cycles
    # against a 20 s API SVID new handshakes happened, none failed.
    assert 2 <= int(cycles[-1]) < 15, out

    # The posted totals are what the records imply.
    records = get_json(world.api_url + "/records", world.as_data_processor, ENTERPRISE_API)
    expected: dict[str, float] = {}
    for r in records["records"]:
        expected[r["region"]] = round(expected.get(r["region"], 0) + r["balance"], 2)
    results = get_json(world.api_url + "/results", world.as_data_processor, ENTERPRISE_API)
    latest = results["results"][0]
    assert latest["posted_by"] == DATA_PROCESSOR
    assert latest["through_id"] == max(r["id"] for r in records["records"])
    assert latest["totals"] == expected

    # /health reports the SVID the API serves with now: one of the short-lived ones.
    health = get_json(world.api_url + "/health", world.as_data_processor, ENTERPRISE_API)
    assert health["spiffe_id"] == ENTERPRISE_API
    assert re.fullmatch(r"[0-9a-f]+", health["serial"])
    left = datetime.fromisoformat(health["not_after"]) - datetime.now(timezone.utc)
    assert timedelta(0) < left <= timedelta(seconds=API_SVID_TTL + 1)


def test_upstream_client_reaches_enterprise_api_through_the_gateway(world: World) -> None:
    body = get_json(world.gateway_url + "/records", world.as_upstream_client, SECURITY_GATEWAY)
    assert [r["customer"] for r in body["records"]] == ["Acme Corp", "Globex", "Initech"]
    # The API authorized (and reports) the gateway, which called it with its own SVID ...
    assert body["caller"] == SECURITY_GATEWAY
    assert "jwt" not in body
    # ... while the gateway admitted the caller from the other trust domain.
    world.gateway.wait_for_line(
        r"event=audit client="
        + re.escape(UPSTREAM_CLIENT)
        + r" auth=x509 method=GET route=/records decision=allow .*status=200 upstream_status=200"
    )


def test_gateway_refuses_a_downstream_identity_it_does_not_allow(world: World) -> None:
    # The same identity is a fine caller of enterprise-api, so the refusal below is the
    # gateway's policy (enterprise-root.org only), not a broken SVID.
    health = get_json(world.api_url + "/health", world.as_data_processor, ENTERPRISE_API)
    assert health["spiffe_id"] == ENTERPRISE_API
    with pytest.raises(OSError):
        get_json(world.gateway_url + "/records", world.as_data_processor, SECURITY_GATEWAY)
    world.gateway.wait_for_line(r"handshake with .* refused: .*" + re.escape(DATA_PROCESSOR))
    assert "client=" + DATA_PROCESSOR not in world.gateway.output()


def test_jwt_svids_are_checked_for_audience_at_the_api_and_at_the_gateway(world: World) -> None:
    with WorkloadApiClient(world.agents["upstream-client"].endpoint) as upstream_client:
        for_api = upstream_client.fetch_jwt_svid(ENTERPRISE_API).token
        for_gateway = upstream_client.fetch_jwt_svid(SECURITY_GATEWAY).token

    # Directly at the API: TLS says who called, the token (validated with enterprise-root.org's
    # JWT bundle from the API's own agent) must be for the API and name the same caller.
    body = get_json(world.api_url + "/records", world.as_upstream_client, ENTERPRISE_API,
                    for_api)  # fmt: skip
    assert body["caller"] == UPSTREAM_CLIENT
    assert body["jwt"] == {"subject": UPSTREAM_CLIENT, "audience": [ENTERPRISE_API]}
    for refused in (for_gateway, for_api[:-4] + "AAAA"):
        with pytest.raises(urllib.error.HTTPError) as err:
            get_json(world.api_url + "/records", world.as_upstream_client, ENTERPRISE_API,
                     refused)  # fmt: skip
        assert err.value.code == 401
        assert "jwtsvid" in json.load(err.value)["reason"]

    # At the gateway, as an external client without a certificate: the token is the identity.
    body = get_json(world.gateway_url + "/records", None, SECURITY_GATEWAY, for_gateway,
                    bundles=world.as_upstream_client)  # fmt: skip
    assert body["caller"] == SECURITY_GATEWAY
    with pytest.raises(urllib.error.HTTPError) as err:
        get_json(world.gateway_url + "/records", None, SECURITY_GATEWAY, for_api,
                 bundles=world.as_upstream_client)  # fmt: skip
    assert err.value.code == 401
    world.gateway.wait_for_line(
        r"event=audit client=" + re.escape(UPSTREAM_CLIENT) + r" auth=jwt .*status=200"
    )


def test_gateway_answers_502_when_the_api_refuses_its_identity_or_is_not_who_it_must_be(
    world: World,
) -> None:
    # an API whose table does not name the gateway: it answers 403, the gateway says 502
    api = world.start("enterprise_api", "enterprise-api", "--listen", "127.0.0.1:0",
                      "--grant", f"read={DATA_PROCESSOR}",
                      "--db", str(world.log_dir / "strict.sqlite3"))  # fmt: skip
    gateways = []
    try:
        strict_url = api.wait_for_line(r"listening on (https://\S+)").group(1)
        for upstream, upstream_id in (
            (strict_url, ENTERPRISE_API),  # the API refuses the gateway
            (world.api_url, DATA_PROCESSOR),  # the gateway refuses the API's SVID
        ):
            gateway = world.start(
                "security_gateway", "security-gateway", "--listen", "127.0.0.1:0",
                "--upstream", upstream, "--upstream-id", upstream_id,
                "--allow-trust-domain", UPSTREAM_TD.name,
                "--api-keys", str(world.log_dir / "keys.json"),
            )  # fmt: skip
            gateways.append(gateway)
            url = gateway.wait_for_line(r"listening on (https://\S+)").group(1)
            with pytest.raises(urllib.error.HTTPError) as err:
                get_json(url + "/records", world.as_upstream_client, SECURITY_GATEWAY)
            assert err.value.code == 502
            assert "refused" in json.load(err.value)["reason"]
            gateway.wait_for_line(r"event=audit .* status=502")
        api.wait_for_line(
            "peer=" + re.escape(SECURITY_GATEWAY) + r" method=GET path=/records "
            r"route=records.list outcome=deny"
        )
    finally:
        for gateway in gateways:
            gateway.stop()
        api.stop()


def test_examples_stop_cleanly_on_sigterm(world: World) -> None:
    processor = world.start(
        "data_processor", "data-processor",
        "--api", world.api_url, "--api-id", ENTERPRISE_API, "--interval", "0.5",
    )  # fmt: skip
    api = world.start("enterprise_api", "enterprise-api", "--listen", "127.0.0.1:0",
                      "--grant", f"read={DATA_PROCESSOR}",
                      "--db", str(world.log_dir / "sigterm.sqlite3"))  # fmt: skip
    gateway = world.start(
        "security_gateway", "security-gateway", "--listen", "127.0.0.1:0",
        "--upstream", world.api_url, "--upstream-id", ENTERPRISE_API,
        "--allow-trust-domain", UPSTREAM_TD.name, "--api-keys", str(world.log_dir / "keys.json"),
    )  # fmt: skip
    try:
        processor.wait_for_line(r"event=cycle cycle=2 outcome=ok")
        api.wait_for_line(r"listening on")
        url = gateway.wait_for_line(r"listening on (https://\S+)").group(1)
        # with a keep-alive connection open upstream, SIGTERM still ends it promptly
        get_json(url + "/records", world.as_upstream_client, SECURITY_GATEWAY)
    finally:
        processor.stop()
        api.stop()
        gateway.stop()
    assert gateway.proc.returncode == 0, gateway.output()
    assert gateway.output().rstrip().endswith("stopped"), gateway.output()
    assert processor.proc.returncode == 0, processor.output()
    assert re.search(r"stopped after \d+ cycle\(s\), 0 failed", processor.output())
    assert api.proc.returncode == 0, api.output()
    assert api.output().rstrip().endswith("stopped"), api.output()


def test_example_without_an_identity_exits_with_a_clear_error(
    world: World, spire_agent_factory
) -> None:
    bare = spire_agent_factory(world.downstream)  # an agent with no entry for anyone
    api = Example(
        "enterprise_api", bare.endpoint,
        ["--listen", "127.0.0.1:0", "--grant", f"read={DATA_PROCESSOR}", "--identity-timeout", "3",
         "--db", str(world.log_dir / "no-identity.sqlite3")],
        world.log_dir,
    )  # fmt: skip
    assert api.wait(60) == 2, api.output()
    out = api.output()
    assert f"the SPIRE agent at {bare.endpoint} has no registration entry" in out
    assert f"unix:uid:{os.getuid()}" in out
    assert "listening" not in out
