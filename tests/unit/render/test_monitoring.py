# ruff: noqa: E501  (promtool test data: series and summaries are written on one line each)
"""The monitoring files `render` writes, checked by Prometheus' and Alertmanager's own
checkers (Debian's promtool and amtool, installed by scripts/install-monitoring), and the
rules' behaviour on synthetic series by `promtool test rules`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from spire_fabric.deploy.render import render_files
from spire_fabric.render import ALERT_NAMES, render_alert_rules
from spire_fabric.runtime.local.localize import LocalSettings, localize
from spire_fabric.topology import preset


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is missing: run scripts/install-monitoring"
    return path


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    topology = localize(preset("enterprise"), LocalSettings(port_base=45000))
    for rel, text in render_files(topology, "local", str(tmp_path)).items():
        if rel.startswith("monitoring/"):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
    return tmp_path / "monitoring"


def _run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_rules_pass_promtool_and_each_names_its_component_and_runbook(rendered: Path) -> None:
    out = _run(_tool("promtool"), "check", "rules", str(rendered / "rules.yml"))
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in out
    rules = yaml.safe_load((rendered / "rules.yml").read_text())["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == list(ALERT_NAMES)
    for r in rules:
        assert "{{ $labels.component }}" in r["annotations"]["summary"], r["alert"]
        assert r["annotations"]["runbook"], r["alert"]


def test_scrape_config_passes_promtool_with_every_component_at_its_moved_port(
    rendered: Path,
) -> None:
    out = _run(_tool("promtool"), "check", "config", str(rendered / "prometheus.yml"))
    assert "is valid prometheus config file syntax" in out
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    targets = {
        t["labels"]["component"]: (job["job_name"], t["targets"][0])
        for job in config["scrape_configs"]
        for t in job["static_configs"]
    }
    assert targets["spire-upstream-server"] == ("spire-server", "127.0.0.1:45079")
    assert targets["downstream-agent-2"] == ("spire-agent", "127.0.0.1:22282")
    assert targets["security-gateway"] == ("workload", "127.0.0.1:22383")
    assert targets["prometheus"] == ("prometheus", "127.0.0.1:44090")
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:44093"
    ]
    assert len([c for c, (job, _) in targets.items() if job == "workload"]) == 3


def test_alertmanager_config_passes_amtool(rendered: Path) -> None:
    out = _run(_tool("amtool"), "check-config", str(rendered / "alertmanager.yml"))
    assert "SUCCESS" in out


# promtool's unit tests of the rules: a frozen agent (up 0), a gateway answering 5xx, a
# failing federated fetch, an SVID past two thirds of its life: each fires, and a healthy
# series does not.
RULE_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 5s
tests:
- interval: 5s
  input_series:
  - series: 'up{job="spire-agent", component="downstream-agent-1", instance="a:1"}'
    values: '1 1 0 0 0 0 0 0 0 0'
  - series: 'up{job="spire-agent", component="downstream-agent-2", instance="a:2"}'
    values: '1 1 1 1 1 1 1 1 1 1'
  alert_rule_test:
  - eval_time: 25s
    alertname: SpireAgentDown
    exp_alerts:
    - exp_labels: {severity: critical, job: spire-agent, component: downstream-agent-1,
                   instance: "a:1"}
      exp_annotations:
        summary: "SPIRE agent downstream-agent-1 is down: its telemetry at a:1 does not answer; its workloads get no new SVIDs"
        runbook: RUNBOOK(SpireAgentDown)
  - eval_time: 10s
    alertname: SpireAgentDown
    exp_alerts: []
- interval: 5s
  input_series:
  - series: 'spire_fabric_example_requests_total{component="security-gateway", status="200"}'
    values: '0+10x40'
  - series: 'spire_fabric_example_requests_total{component="security-gateway", status="502"}'
    values: '0x20 0+5x20'
  alert_rule_test:
  - eval_time: 90s
    alertname: GatewayErrors
    exp_alerts: []
  - eval_time: 200s
    alertname: GatewayErrors
    exp_alerts:
    - exp_labels: {severity: critical, component: security-gateway}
      exp_annotations:
        summary: "Gateway security-gateway answers 33.33% of its requests with 5xx: the API behind it is unreachable or refuses it"
        runbook: RUNBOOK(GatewayErrors)
- interval: 15s  # the enterprise preset's hint is 1m: a fetch every 15 s
  input_series:
  - series: 'spire_server_bundle_manager_fetch_federated_bundle{component="spire-downstream-server", trust_domain_id="enterprise-root_org", status="OK"}'
    values: '1 2 3 4 5 6 7 8 8 8 8 8 8 8 8 8'
  - series: 'spire_server_bundle_manager_fetch_federated_bundle{component="spire-downstream-server", trust_domain_id="enterprise-root_org", status="Unknown"}'
    values: '0 0 0 0 0 0 0 0 1 2 3 4 5 6 7 8'
  alert_rule_test:
  - eval_time: 2m
    alertname: FederatedBundleStale
    exp_alerts: []
  - eval_time: 210s
    alertname: FederatedBundleStale
    exp_alerts:
    - exp_labels: {severity: warning, component: spire-downstream-server,
                   trust_domain_id: enterprise-root_org}
      exp_annotations:
        summary: "SPIRE server spire-downstream-server cannot refresh the bundle of enterprise-root_org: every fetch for a whole refresh hint (1m) failed, so its copy is older than the hint allows"
        runbook: RUNBOOK(FederatedBundleStale)
- interval: 15s  # a young deployment: one success so far (a counter born with 1), then failures
  input_series:
  - series: 'spire_server_bundle_manager_fetch_federated_bundle{component="spire-upstream-server", trust_domain_id="downstream_example_org", status="OK"}'
    values: '_ _ _ 1 1 1 1 1 1 1 1 1 1 1'
  - series: 'spire_server_bundle_manager_fetch_federated_bundle{component="spire-upstream-server", trust_domain_id="downstream_example_org", status="Unknown"}'
    values: '_ _ _ _ 1 2 3 4 5 6 7 8 9 10'
  alert_rule_test:
  - eval_time: 90s
    alertname: FederatedBundleStale
    exp_alerts: []
  - eval_time: 3m
    alertname: FederatedBundleStale
    exp_alerts:
    - exp_labels: {severity: warning, component: spire-upstream-server,
                   trust_domain_id: downstream_example_org}
      exp_annotations:
        summary: "SPIRE server spire-upstream-server cannot refresh the bundle of downstream_example_org: every fetch for a whole refresh hint (1m) failed, so its copy is older than the hint allows"
        runbook: RUNBOOK(FederatedBundleStale)
- interval: 5s
  input_series:
  - series: 'spire_fabric_example_svid_expiry_seconds{component="enterprise-api"}'
    values: '1000-5x40'
  - series: 'spire_fabric_example_svid_lifetime_seconds{component="enterprise-api"}'
    values: '2700x40'
  alert_rule_test:
  - eval_time: 30s
    alertname: WorkloadSvidNotRotating
    exp_alerts: []
  - eval_time: 195s
    alertname: WorkloadSvidNotRotating
    exp_alerts:
    - exp_labels: {severity: critical, component: enterprise-api}
      exp_annotations:
        summary: "Workload enterprise-api holds an X509-SVID with less than a third of its TTL left (13m 25s): its agent stopped rotating it"
        runbook: RUNBOOK(WorkloadSvidNotRotating)
"""


def test_rules_fire_on_their_faults_and_not_on_healthy_series(rendered: Path) -> None:
    rules = yaml.safe_load((rendered / "rules.yml").read_text())["groups"][0]["rules"]
    text = RULE_TESTS
    for r in rules:  # the runbook lines are plain text; the summaries above are checked
        text = text.replace(f"RUNBOOK({r['alert']})", json.dumps(r["annotations"]["runbook"]))
    (rendered / "rules_test.yml").write_text(text)
    out = _run(_tool("promtool"), "test", "rules", "rules_test.yml", cwd=rendered)
    assert "SUCCESS" in out


def test_a_topology_without_monitoring_renders_no_monitoring_files() -> None:
    assert not [r for r in render_files(preset("basic"), "local", "/s") if "monitoring" in r]
    with pytest.raises(ValueError, match="has no `monitoring:`"):
        render_alert_rules(preset("basic"))
