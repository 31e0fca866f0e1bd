"""The checks' own logic, on a test double of the Deployment interface.

The real local deployment is what the integration and e2e tests verify; here a double lets
a test say exactly what a target reports and assert what verify makes of it: a workload
the topology says to run but the target did not start is a red check, never a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from spire_fabric.identity import SpiffeId
from spire_fabric.runtime import Deployment
from spire_fabric.runtime.deployment import ComponentHealth, DeploymentPlan, WorkloadAddress
from spire_fabric.runtime.local import LocalDeployment, LocalSettings
from spire_fabric.topology import Topology, preset
from spire_fabric.verify import verify_deployment


class Unreachable(Exception):
    pass


@dataclass
class DoubleDeployment:
    """Reports what the test says; every SPIRE call fails as if the servers were down."""

    topology: Topology
    rows: list[ComponentHealth] = field(default_factory=list)
    status_asked: list[bool] = field(default_factory=list)  # the svids argument of each call
    target = "local"

    @property
    def name(self) -> str:
        return self.topology.name

    @property
    def entry_owner(self) -> str:
        return "double"

    def server(self, name):
        raise Unreachable(f"{name} is down")

    def server_health(self, name):
        return (False, False)

    def server_replicas(self, name):
        return ()

    def replica_server(self, name, replica):
        raise Unreachable(f"{name}/{replica} is down")

    def replica_server_svid(self, name, replica):
        raise Unreachable(f"{name}/{replica} is down")

    def restart_replica(self, name, replica):
        raise AssertionError("the checks never restart a replica")

    def bundle_endpoint_url(self, name):
        return "https://127.0.0.1:9"

    def agent_endpoint(self, name):
        return "unix:///nonexistent/agent.sock"

    def agent_healthy(self, name):
        return False

    def agent_id(self, name):
        return None

    def agent_svid_chain(self, name):
        return None

    def workload_address(self, name) -> WorkloadAddress | None:
        return None

    def root_ca(self):
        return None

    def telemetry_endpoint(self, component):
        return None

    def monitoring_urls(self):
        return None

    def server_info(self, name):
        raise Unreachable(f"{name} is down")

    def desired_entries(self, server):
        return []

    def entry_plan(self, server):
        raise Unreachable(f"{server} is down")

    def x509_context(self, workload):
        raise Unreachable(f"the agent of {workload} is down")

    def jwt_svid(self, workload, audience):
        raise Unreachable(f"the agent of {workload} is down")

    def jwt_bundles(self, workload):
        raise Unreachable(f"the agent of {workload} is down")

    def workload_views(self, workload, audiences=()):
        raise Unreachable(f"the agent of {workload} is down")

    def check(self):
        pass

    def plan(self):
        return DeploymentPlan(self.name, "local")

    def up(self, report=None, plan=None):
        return self.plan()

    def close(self):
        pass

    def workload_file(self, workload, name):
        return None

    def put_workload_file(self, workload, name, data):
        pass

    ca_directory = None  # no CA hierarchy: rotate root is refused before it is read

    def place_signing_ca(self, server, ca):
        raise AssertionError("the checks never place a CA")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def status(self, svids=True):
        self.status_asked.append(svids)
        return self.rows

    def down(self, purge=False):
        return []


def test_the_local_target_and_the_double_both_satisfy_the_interface(tmp_path):
    local = LocalDeployment.create(preset("basic"), tmp_path / "state", LocalSettings())
    assert isinstance(local, Deployment)
    assert isinstance(DoubleDeployment(preset("basic")), Deployment)
    assert not (tmp_path / "state").exists()  # constructing reads, it never writes


def test_a_workload_the_target_did_not_start_is_a_red_check_not_an_absent_one():
    report = verify_deployment(DoubleDeployment(preset("enterprise")))
    for name in ("enterprise-api", "data-processor", "security-gateway"):
        check = report.get(f"workload-process:{name}")
        assert not check.ok and "did not start it" in check.detail
    # and its health probe is there, red, saying why
    health = report.get("workload-health:enterprise-api")
    assert not health.ok


def test_a_running_workload_row_turns_its_process_check_green():
    t = preset("basic")
    rows = [ComponentHealth("example-app", "workload", 4242, True, True, "")]
    double = DoubleDeployment(t, rows)
    report = verify_deployment(double)
    assert report.get("workload-process:example-app").ok
    assert report.get("workload-process:example-app").detail == "pid 4242"
    # once, without expiries: those would read every identity again (an exec per pod)
    assert double.status_asked == [False]
    # nothing else can pass when every server is down: the report is red, not empty
    assert not report.ok and report.get("server-live:spire-server").detail.startswith("health")


def test_a_stopped_workload_shows_its_last_exit():
    rows = [ComponentHealth("example-app", "workload", None, False, False, "",
                            last_exit="exited with code 3")]  # fmt: skip
    report = verify_deployment(DoubleDeployment(preset("basic"), rows))
    assert "exited with code 3" in report.get("workload-process:example-app").detail


def test_agent_attestation_check_uses_the_interface_not_the_local_state():
    report = verify_deployment(DoubleDeployment(preset("basic")))
    assert "never attested" in report.get("agent-attested:spire-agent").detail
    assert SpiffeId.parse("spiffe://example.org/x")  # the double needs no SPIRE at all


def test_authorities_report_names_each_server_that_could_not_be_asked():
    from spire_fabric.verify import AuthoritiesError, authorities_report

    report = authorities_report(DoubleDeployment(preset("enterprise")))
    assert report.names == ("spire-upstream-server", "spire-downstream-server")
    assert [s.error for s in report.servers] == [
        "spire-upstream-server is down", "spire-downstream-server is down"
    ]
    assert not report.ok
    assert "spire-downstream-server is down" in report._repr_html_()
    with pytest.raises(AuthoritiesError, match="no server 'spire-server' in topology "
                       "'enterprise'; its servers: spire-upstream-server, spire-downstream"):
        authorities_report(DoubleDeployment(preset("enterprise")), ["spire-server"])


def _one_trust_domain_with_a_server_sidecar() -> Topology:
    """nginx behind a server sidecar that admits one caller, all in one trust domain."""
    from spire_fabric.topology import JoinTokenAttestor, LocalRun, Sidecar, TopologyBuilder

    td = "one.example.org"
    caller = f"spiffe://{td}/caller"
    b = (TopologyBuilder("one-td").trust_domain(td)
         .server("spire-server", td, bundle_endpoint=None, node_attestors=(JoinTokenAttestor(),))
         .agent("agent-a", "spire-server").agent("agent-b", "spire-server"))  # fmt: skip
    b.workload("inventory", f"spiffe://{td}/inventory", agent="agent-a", selectors=["unix:uid:0"],
               run=LocalRun(module="spire_fabric.examples.inventory",
                            args=("--listen", "{listen}"), port=30445),
               sidecars=[Sidecar("tls", "server", app_port=30446, allow_ids=(caller,))])
    b.workload("caller", caller, agent="agent-b", selectors=["unix:uid:0"],
               run=LocalRun(module="spire_fabric.examples.plain_poller",
                            args=("--url", "http://{client}/health")),
               sidecars=[Sidecar("mtls", "client", listen_port=30450, target="inventory")])
    return b.build()  # fmt: skip


def test_a_forged_cross_trust_domain_check_needs_another_trust_domain_to_forge_with():
    """One trust domain: no boundary to forge across, so no forged-SVID check (it was a red
    check that failed every `up` of such a topology); the enterprise preset keeps its own."""
    one = verify_deployment(DoubleDeployment(_one_trust_domain_with_a_server_sidecar()))
    ids = {c.id for c in one.checks if c.id.startswith("sidecar-")}
    assert "sidecar-allowed:caller->inventory/tls" in ids
    assert not any(i.startswith("sidecar-forged:") for i in ids), ids
    enterprise = verify_deployment(DoubleDeployment(preset("enterprise")))
    assert "sidecar-forged:enterprise-api->inventory/tls" in {c.id for c in enterprise.checks}


def test_a_server_found_not_live_is_not_asked_again_by_the_checks_after():
    """Each call to a gone server retries until its timeout; one not-live answer is enough."""
    asked: list[str] = []

    class Counting(DoubleDeployment):
        def server(self, name):
            asked.append(name)
            return super().server(name)

    report = verify_deployment(Counting(preset("basic")))
    assert asked == []  # its health said "not live": no check waited on its API
    datastore = report.get("datastore:spire-server")
    assert not datastore.ok
    assert datastore.detail == "spire-server is not live (see server-live:spire-server)"


def test_the_checks_run_at_the_same_time_and_report_in_the_same_order(monkeypatch):
    """Each check waits on its own server call (a second or more on Kubernetes): in a pool
    the report takes about the longest of them, not their sum, and its rows, results and
    messages are those of the checks run one after the other."""
    import time

    import spire_fabric.verify.checks as checks

    class Slow(DoubleDeployment):
        def server_health(self, name):
            return (True, True)  # live: every check asks its server

        def server(self, name):
            time.sleep(0.15)
            raise Unreachable(f"{name} did not answer")

    def run() -> tuple[list[tuple[str, str, bool, str]], float]:
        start = time.monotonic()
        report = verify_deployment(Slow(preset("enterprise")))
        rows = [(c.id, c.title, c.ok, c.detail) for c in report.checks]
        return rows, time.monotonic() - start

    monkeypatch.setattr(checks, "CHECK_WORKERS", 1)
    one_by_one, sequential_s = run()
    monkeypatch.setattr(checks, "CHECK_WORKERS", 8)
    pooled, pooled_s = run()
    assert pooled == one_by_one
    assert sum("did not answer" in r[3] for r in pooled) >= 6  # the calls that were slow
    assert pooled_s < sequential_s / 2, (pooled_s, sequential_s)
