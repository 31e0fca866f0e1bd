"""`monitoring:` on Kubernetes, rendered: one Prometheus per cluster, the monitoring cluster's
with the rules file `render` writes for the local target (one source) and the Alertmanager,
the other federated through its NodePort; targets found through headless Services by DNS;
configs accepted by Debian's promtool and amtool; pods as hardened as every other."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from spire_fabric.render import render_alert_rules
from spire_fabric.render.kubernetes import cluster_of, render_kubernetes_objects
from spire_fabric.topology import MONITORING_NAMESPACE, monitoring_cluster, preset

Obj = dict[str, Any]


def _objects(cluster: str) -> list[Obj]:
    return [o for o in render_kubernetes_objects(preset("enterprise")) if cluster_of(o) == cluster]


def _one(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _config(cluster: str) -> dict[str, str]:
    return _one(_objects(cluster), "ConfigMap", "prometheus-config")["data"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is missing: run scripts/install-monitoring"
    return path


def _check(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_downstream_cluster_evaluates_the_same_rules_file_and_holds_the_alertmanager():
    t = preset("enterprise")
    assert monitoring_cluster(t) == "downstream-cluster"  # the edge workload's
    down, up = _config("downstream-cluster"), _config("upstream-cluster")
    assert down["rules.yml"] == render_alert_rules(t)  # one source for both targets
    assert "rules.yml" not in up  # only one Prometheus alerts, so nothing fires twice
    kinds = {(o["kind"], o["metadata"]["name"]) for o in _objects("upstream-cluster")
             if o["metadata"].get("namespace") == MONITORING_NAMESPACE}  # fmt: skip
    assert ("Deployment", "alertmanager") not in kinds
    _one(_objects("downstream-cluster"), "Deployment", "alertmanager")


def test_prometheus_finds_every_server_agent_and_workload_by_dns_and_federates_upstream():
    down = yaml.safe_load(_config("downstream-cluster")["prometheus.yml"])
    jobs = {j["job_name"]: j for j in down["scrape_configs"]}
    names = {job: [n for sd in jobs[job]["dns_sd_configs"] for n in sd["names"]]
             for job in ("spire-server", "spire-agent", "workload")}  # fmt: skip
    assert names == {
        "spire-server": ["spire-downstream-server-metrics.spire-downstream.svc"],
        "spire-agent": [f"downstream-agent-{i}-metrics.spire-downstream-agents.svc"
                        for i in (1, 2, 3)],
        "workload": [f"{w}-metrics.downstream-workloads.svc"
                     for w in ("enterprise-api", "data-processor", "security-gateway")],
    }  # fmt: skip
    federate = jobs["federate-upstream-cluster"]
    assert federate["honor_labels"] is True and federate["metrics_path"] == "/federate"
    # a series gone upstream goes stale here at once (found on the clusters: a replaced
    # server pod's old address kept SpireServerDown firing for the 5 min lookback)
    assert federate["honor_timestamps"] is False
    assert federate["static_configs"][0]["targets"] == ["upstream-cluster-control-plane:30090"]
    assert down["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager.spire-monitoring.svc:9093"]
    up = yaml.safe_load(_config("upstream-cluster")["prometheus.yml"])
    assert "alerting" not in up and "rule_files" not in up
    up_jobs = {j["job_name"]: j for j in up["scrape_configs"]}
    assert [sd["names"] for sd in up_jobs["spire-server"]["dns_sd_configs"]] == [
        ["spire-upstream-server-metrics.spire-upstream.svc"]]
    # the NodePort exists exactly where it is federated from
    svc = {c: _one(_objects(c), "Service", "prometheus")["spec"]
           for c in ("upstream-cluster", "downstream-cluster")}  # fmt: skip
    assert svc["upstream-cluster"]["type"] == "NodePort"
    assert svc["upstream-cluster"]["ports"][0]["nodePort"] == 30090
    assert svc["downstream-cluster"]["type"] == "ClusterIP"


def test_a_hung_target_stays_discovered_so_it_is_down_not_gone():
    """A frozen agent fails its readiness probe; a headless Service that dropped not-ready
    pods would take its DNS record away, and SpireAgentDown (up == 0) could never fire."""
    svc = _one(_objects("downstream-cluster"), "Service", "downstream-agent-2-metrics")
    assert svc["metadata"]["namespace"] == "spire-downstream-agents"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "downstream-agent-2",
                                       "app.kubernetes.io/component": "agent"}  # fmt: skip
    assert svc["spec"]["ports"][0]["port"] == 8282  # its telemetry


@pytest.mark.parametrize("cluster", ["upstream-cluster", "downstream-cluster"])
def test_configs_pass_promtool_and_amtool(cluster: str, tmp_path: Path) -> None:
    data = _config(cluster)
    rules = tmp_path / "rules.yml"
    if "rules.yml" in data:
        rules.write_text(data["rules.yml"])
        _check(_tool("promtool"), "check", "rules", str(rules))
    config = tmp_path / "prometheus.yml"
    config.write_text(data["prometheus.yml"].replace("/etc/prometheus/rules.yml", str(rules)))
    _check(_tool("promtool"), "check", "config", str(config))
    if cluster == "downstream-cluster":
        am = _one(_objects(cluster), "ConfigMap", "alertmanager-config")["data"]
        (tmp_path / "alertmanager.yml").write_text(am["alertmanager.yml"])
        _check(_tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml"))


def test_monitoring_pods_are_hardened_with_no_token_and_roll_on_a_new_config():
    for o in _objects("downstream-cluster"):
        if o["kind"] != "Deployment" or o["metadata"]["namespace"] != MONITORING_NAMESPACE:
            continue
        tmpl = o["spec"]["template"]
        pod = tmpl["spec"]
        assert pod["automountServiceAccountToken"] is False  # DNS discovery needs no API
        assert pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert set(c["resources"]["limits"]) == {"cpu", "memory", "ephemeral-storage"}
        assert "command" not in c  # arguments only: Debian-built or official image alike
        assert len(tmpl["metadata"]["annotations"]["spire-fabric.io/config-sha256"]) == 16
    alertmanager = _one(_objects("downstream-cluster"), "Deployment", "alertmanager")
    assert "--cluster.listen-address=" in alertmanager["spec"]["template"]["spec"][
        "containers"][0]["args"]  # no gossip port


def test_a_topology_without_monitoring_renders_none_and_keeps_metrics_on_loopback():
    objects = render_kubernetes_objects(preset("nested"))
    assert preset("nested").monitoring is None
    assert not [o for o in objects if o["metadata"].get("namespace") == MONITORING_NAMESPACE]
    assert not [o for o in objects if o["metadata"]["name"].endswith("-metrics")]
