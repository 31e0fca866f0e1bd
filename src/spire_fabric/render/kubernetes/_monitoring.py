"""`monitoring:` on Kubernetes: one Prometheus per cluster, the rules and Alertmanager in one.

Discovery: Debian's ``prometheus`` 2.42 (what the test clusters' image is built from) is
compiled without ``kubernetes_sd_configs`` (Debian does not package client-go; ``promtool
check config`` refuses the field). So each component Prometheus scrapes gets a headless
Service ``<component>-metrics`` in its own namespace (``publishNotReadyAddresses``: a hung
agent fails its readiness probe, and must stay a target that is *down*, not vanish), and
Prometheus finds the pods behind it through cluster DNS (``dns_sd_configs``, type A). That
needs no ServiceAccount token and no RBAC at all: less than the pod lister
``kubernetes_sd_configs`` would need, and the same with the official image.

Why one Prometheus per cluster (docs/monitoring.md says it for users): cluster DNS and pod
addresses are per cluster, so a single Prometheus would need every telemetry port of the
other cluster behind a NodePort. Instead the *monitoring cluster* (:func:`monitoring_cluster`:
the edge workload's, else the first) runs the Prometheus that evaluates the rules (the same
file `render` writes for the local target) and the Alertmanager, and federates every other
cluster's Prometheus through one NodePort (the topology's ``prometheus_port``), which serves
read-only queries (no admin API, no lifecycle endpoint). With ``honor_labels`` the
federated series keep their ``job`` and ``component``, so ``up{job="spire-agent"} == 0`` is
the same rule for an agent of either cluster.

Both run as non-root with a read-only root and no ServiceAccount token, their data on an
emptyDir (Prometheus keeps ``retention`` of history while its pod lives).
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from spire_fabric.render._monitoring import (
    GHOSTUNNEL_METRICS_PATH,
    _d,
    render_alert_rules,
    render_alertmanager_config,
)
from spire_fabric.render.kubernetes._common import (
    Obj,
    config_map,
    meta,
    obj,
    readiness_probe,
    restricted_container,
    restricted_pod,
    selector_labels,
)
from spire_fabric.render.kubernetes._resources import resources
from spire_fabric.topology import MONITORING_NAMESPACE, Monitoring, Topology, monitoring_cluster

__all__ = [
    "ALERTMANAGER",
    "ALERTMANAGER_PORT",
    "COMPONENT",
    "PROMETHEUS",
    "PROMETHEUS_PORT",
    "metrics_service_name",
    "render_monitoring",
    "scrape_targets",
]

PROMETHEUS, ALERTMANAGER = "prometheus", "alertmanager"
COMPONENT = "monitoring"
PROMETHEUS_PORT, ALERTMANAGER_PORT = 9090, 9093
CONFIG_DIR = "/etc/prometheus"
UID = 65534  # nobody, as the official images run
JOBS = ("spire-server", "spire-agent", "workload")


def scrape_targets(topology: Topology, cluster: str) -> list[tuple[str, str, str, str, int]]:
    """(job, component, role, namespace, port) of every pod Prometheus scrapes in
    ``cluster``: servers' and agents' telemetry, workloads' /metrics."""
    from spire_fabric.render.kubernetes._workloads import scraped_metrics_port, workload_cluster

    out: list[tuple[str, str, str, str, int]] = []
    for s in topology.servers:
        k = s.kubernetes
        if k is not None and k.cluster == cluster and s.ports.telemetry is not None:
            out.append(("spire-server", s.name, "server", k.namespace, s.ports.telemetry))
    for a in topology.agents:
        ak = a.kubernetes
        if ak is not None and ak.cluster == cluster and a.telemetry_port is not None:
            out.append(("spire-agent", a.name, "agent", ak.namespace, a.telemetry_port))
    for w in topology.workloads:
        port = scraped_metrics_port(topology, w)
        wk = w.kubernetes
        if wk is not None and port is not None and workload_cluster(topology, w) == cluster:
            out.append(("workload", w.name, "workload", wk.namespace, port))
    return out


# the sidecars' jobs, named as on the local target: ghostunnel's Prometheus text, the
# files-mode helper's /metrics
SIDECAR_JOBS = {"ghostunnel": GHOSTUNNEL_METRICS_PATH, "svid-helper": "/metrics"}


def sidecar_scrape_targets(topology: Topology, cluster: str
                           ) -> list[tuple[str, str, str, str, int]]:
    """(job, component ``<workload>/<sidecar>`` as `status` names it, workload, namespace,
    status port) of every sidecar with a ``status_port`` in ``cluster``'s pods."""
    from spire_fabric.render.kubernetes._workloads import workload_cluster

    out = []
    for w in topology.workloads:
        wk = w.kubernetes
        if wk is None or workload_cluster(topology, w) != cluster:
            continue
        for sc in w.sidecars:
            if sc.status_port is not None:
                job = "svid-helper" if sc.mode == "files" else "ghostunnel"
                out.append((job, f"{w.name}/{sc.name}", w.name, wk.namespace, sc.status_port))
    return out


def _sidecar_service_stem(component: str) -> str:
    return component.replace("/", "-")


def _sidecar_job(job: str, targets: list[tuple[str, str, str, str, int]], refresh: str) -> Obj:
    """One job per sidecar kind: each sidecar's pod through its headless Service, its
    ``component`` label set by the Service's name (a Service name has no ``/``)."""
    return {
        "job_name": job,
        "metrics_path": SIDECAR_JOBS[job],
        "dns_sd_configs": [
            {"names": [f"{metrics_service_name(_sidecar_service_stem(c))}.{ns}.svc"],
             "type": "A", "port": port, "refresh_interval": refresh}
            for _, c, _, ns, port in targets],
        "relabel_configs": [
            {"source_labels": ["__meta_dns_name"],
             "regex": rf"{metrics_service_name(_sidecar_service_stem(c))}\..+",
             "target_label": "component", "replacement": c}
            for _, c, _, _, _ in targets] + [
            {"source_labels": ["__meta_dns_name"], "regex": r".+-metrics\.([^.]+)\.svc",
             "target_label": "namespace"}],
    }  # fmt: skip


def metrics_service_name(component: str) -> str:
    return f"{component}-metrics"


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)


def _dns_job(job: str, targets: list[tuple[str, str, str, str, int]], refresh: str) -> Obj:
    """One job: each component's pods through its headless Service's A records."""
    return {
        "job_name": job,
        "dns_sd_configs": [
            {"names": [f"{metrics_service_name(name)}.{ns}.svc"], "type": "A", "port": port,
             "refresh_interval": refresh}
            for _, name, _, ns, port in targets],
        "relabel_configs": [
            {"source_labels": ["__meta_dns_name"], "regex": r"(.+)-metrics\..+",
             "target_label": "component"},
            {"source_labels": ["__meta_dns_name"], "regex": r".+-metrics\.([^.]+)\.svc",
             "target_label": "namespace"},
        ],
    }  # fmt: skip


def render_kubernetes_prometheus_config(topology: Topology, cluster: str) -> str:
    """``cluster``'s Prometheus: its pods by service discovery; in the monitoring cluster also
    the rules, Alertmanager and every other cluster's Prometheus (federation)."""
    m = topology.monitoring
    assert m is not None
    main = cluster == monitoring_cluster(topology)
    jobs: list[dict[str, Any]] = [
        {"job_name": PROMETHEUS, "static_configs": [
            {"targets": [f"127.0.0.1:{PROMETHEUS_PORT}"],
             "labels": {"component": f"{PROMETHEUS}-{cluster}"}}]},
    ]  # fmt: skip
    targets = scrape_targets(topology, cluster)
    for job in JOBS:
        mine = [t for t in targets if t[0] == job]
        if mine:
            jobs.append(_dns_job(job, mine, _d(m.scrape_interval)))
    sidecars = sidecar_scrape_targets(topology, cluster)
    for job in SIDECAR_JOBS:
        mine = [t for t in sidecars if t[0] == job]
        if mine:
            jobs.append(_sidecar_job(job, mine, _d(m.scrape_interval)))
    document: dict[str, Any] = {
        "global": {
            "scrape_interval": _d(m.scrape_interval),
            "scrape_timeout": _d(m.scrape_interval),  # a hung target fails within a scrape
            "evaluation_interval": _d(m.evaluation_interval),
            "external_labels": {"deployment": topology.name, "cluster": cluster},
        },
    }
    if main:
        am = f"{ALERTMANAGER}.{MONITORING_NAMESPACE}.svc:{ALERTMANAGER_PORT}"
        document["rule_files"] = [f"{CONFIG_DIR}/rules.yml"]
        document["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]}
        jobs.append({"job_name": ALERTMANAGER, "static_configs": [
            {"targets": [am], "labels": {"component": ALERTMANAGER}}]})  # fmt: skip
        # the sidecars' jobs only where there are sidecars (the others' match stays)
        kinds = {t[0] for c in topology.clusters for t in sidecar_scrape_targets(topology, c.name)}
        federated = [*JOBS, *(j for j in SIDECAR_JOBS if j in kinds)]
        for other in topology.clusters:
            if other.name == cluster:
                continue
            jobs.append({
                "job_name": f"federate-{other.name}",
                # the other cluster's series as it labelled them (job, component, pod)
                "honor_labels": True,
                # stamped at this scrape: Prometheus applies no staleness to samples with
                # their own timestamps, so a target gone upstream (a replaced pod) would
                # stay `up == 0` here for the 5 min lookback and keep its alert firing
                "honor_timestamps": False,
                "metrics_path": "/federate",
                "params": {"match[]": ['{job=~"' + "|".join(federated) + '"}']},
                "static_configs": [{
                    "targets": [f"{other.effective_node_address}:{m.prometheus_port}"],
                    "labels": {"component": f"{PROMETHEUS}-{other.name}"}}],
            })  # fmt: skip
    document["scrape_configs"] = jobs
    return _yaml(document)


def _metrics_services(topology: Topology, cluster: str) -> list[Obj]:
    """A headless Service per scraped component, its not-ready pods included."""
    out = []
    for _, name, role, ns, port in scrape_targets(topology, cluster):
        out.append(obj("v1", "Service", meta(topology, cluster, metrics_service_name(name), ns,
                                             app=name, component=COMPONENT),
                       spec={"type": "ClusterIP", "clusterIP": "None",
                             "publishNotReadyAddresses": True,
                             "selector": selector_labels(name, role),
                             "ports": [{"name": "metrics", "port": port, "protocol": "TCP",
                                        "targetPort": port}]}))  # fmt: skip
    for _, component, workload, ns, port in sidecar_scrape_targets(topology, cluster):
        name = metrics_service_name(_sidecar_service_stem(component))
        out.append(obj("v1", "Service", meta(topology, cluster, name, ns, app=workload,
                                             component=COMPONENT),
                       spec={"type": "ClusterIP", "clusterIP": "None",
                             "publishNotReadyAddresses": True,
                             "selector": selector_labels(workload, "workload"),
                             "ports": [{"name": "metrics", "port": port, "protocol": "TCP",
                                        "targetPort": port}]}))  # fmt: skip
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _deployment(topology: Topology, cluster: str, app: str, container: Obj, volumes: list[Obj],
                config: str) -> Obj:  # fmt: skip
    """One replica; the pod template names its config's digest, so a changed config rolls
    the pod (neither reloads on its own)."""
    labels = selector_labels(app, COMPONENT)
    spec: Obj = {
        "automountServiceAccountToken": False,  # neither calls the API (DNS discovery)
        "securityContext": restricted_pod(UID),
        "containers": [container],
        "volumes": volumes,
    }
    return obj(
        "apps/v1", "Deployment",
        meta(topology, cluster, app, MONITORING_NAMESPACE, app=app, component=COMPONENT),
        spec={"replicas": 1, "strategy": {"type": "Recreate"},
              "selector": {"matchLabels": labels},
              "template": {"metadata": {"labels": labels, "annotations": {
                  "spire-fabric.io/config-sha256": _digest(config)}}, "spec": spec}},
    )  # fmt: skip


def _container(app: str, image: str, args: list[str], port: int) -> Obj:
    return {
        "name": app,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": readiness_probe({"httpGet": {"path": "/-/ready", "port": "http"}}),
        "livenessProbe": {"httpGet": {"path": "/-/healthy", "port": "http"},
                          "periodSeconds": 10, "initialDelaySeconds": 30},
        "resources": resources(app),
        "securityContext": restricted_container(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "data", "mountPath": "/data"}],
    }  # fmt: skip


def _service(topology: Topology, cluster: str, app: str, port: int,
             node_port: int | None) -> Obj:  # fmt: skip
    p: Obj = {"name": "http", "port": port, "protocol": "TCP", "targetPort": "http"}
    if node_port is not None:
        p["nodePort"] = node_port
    return obj("v1", "Service",
               meta(topology, cluster, app, MONITORING_NAMESPACE, app=app, component=COMPONENT),
               spec={"type": "NodePort" if node_port is not None else "ClusterIP",
                     "selector": selector_labels(app, COMPONENT), "ports": [p]})  # fmt: skip


def _volumes(config_name: str, size: str) -> list[Obj]:
    """The config, and the data on an emptyDir bounded below the container's
    ephemeral-storage limit (the kubelet evicts a pod over either)."""
    return [{"name": "config", "configMap": {"name": config_name}},
            {"name": "data", "emptyDir": {"sizeLimit": size}}]  # fmt: skip


def render_monitoring(topology: Topology, cluster: str) -> list[Obj]:
    """Prometheus of ``cluster`` (and the Alertmanager in the monitoring cluster): the
    headless Services it discovers its targets by, ConfigMaps, Deployments and Services."""
    m: Monitoring | None = topology.monitoring
    if m is None:
        return []
    main = cluster == monitoring_cluster(topology)
    images = topology.kubernetes.images
    config = {"prometheus.yml": render_kubernetes_prometheus_config(topology, cluster)}
    if main:
        config["rules.yml"] = render_alert_rules(topology)  # the one rules file, both targets
    config_name = f"{PROMETHEUS}-config"
    out = [*_metrics_services(topology, cluster),
           config_map(topology, cluster, config_name, MONITORING_NAMESPACE, config, PROMETHEUS)]
    args = [f"--config.file={CONFIG_DIR}/prometheus.yml", "--storage.tsdb.path=/data",
            f"--storage.tsdb.retention.time={_d(m.retention)}",
            f"--web.listen-address=0.0.0.0:{PROMETHEUS_PORT}"]  # fmt: skip
    out.append(_deployment(
        topology, cluster, PROMETHEUS,
        _container(PROMETHEUS, images.prometheus, args, PROMETHEUS_PORT),
        _volumes(config_name, "512Mi"), "".join(config.values())))  # fmt: skip
    # only the federated ones are reached from outside (by the monitoring cluster's)
    out.append(_service(topology, cluster, PROMETHEUS, PROMETHEUS_PORT,
                        None if main else m.prometheus_port))  # fmt: skip
    if main:
        am_config = render_alertmanager_config(topology)
        am_name = f"{ALERTMANAGER}-config"
        out.append(config_map(topology, cluster, am_name, MONITORING_NAMESPACE,
                              {"alertmanager.yml": am_config}, ALERTMANAGER))  # fmt: skip
        am_args = [f"--config.file={CONFIG_DIR}/alertmanager.yml", "--storage.path=/data",
                   f"--web.listen-address=0.0.0.0:{ALERTMANAGER_PORT}",
                   "--cluster.listen-address="]  # no gossip: one Alertmanager  # fmt: skip
        out.append(_deployment(
            topology, cluster, ALERTMANAGER,
            _container(ALERTMANAGER, images.alertmanager, am_args, ALERTMANAGER_PORT),
            _volumes(am_name, "64Mi"), am_config))  # fmt: skip
        out.append(_service(topology, cluster, ALERTMANAGER, ALERTMANAGER_PORT, None))
    return out
