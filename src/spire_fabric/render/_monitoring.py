"""Topology -> Prometheus scrape config, alert rules, and Alertmanager config (YAML).

The metric names are SPIRE 1.13.3's own, read from its source, not invented:
``pkg/common/telemetry`` joins a key's parts with ``_`` behind the service name
(``spire_server`` / ``spire_agent``); a *call counter* (``telemetry.StartCall`` ... ``Done``)
is a counter named by its key with a ``status`` label holding the gRPC code
(``OK``, ``Unknown``, ``Unavailable``, ...) and a summary ``<key>_elapsed_time``. So:

- ``spire_server_rpc_<service>_<method>{status}``: every Server API call (``rpc`` keys);
- ``spire_server_datastore_<table>_<op>{status}``: every datastore call
  (``pkg/common/telemetry/server/datastore``);
- ``spire_server_bundle_manager_fetch_federated_bundle{status, trust_domain_id}``: each
  fetch of a federated bundle (``telemetry/server/bundle_manager.go``), every refresh hint
  / 4 (``pkg/server/bundle/client/manager.go``: ``attemptsPerRefreshHint``; 5 minutes when
  the bundle has no hint).

SPIRE's Prometheus sink is built with ``PrometheusOpts{}`` (no expiration), so a counter,
once seen, stays in the output. The workloads' own metrics are ``examples/_metrics.py``'s
(``spire_fabric_example_*``). Every target carries a ``component`` label (the topology's
name for it), which each alert's summary names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import yaml

from spire_fabric.render._paths import RenderPaths
from spire_fabric.topology import Monitoring, Topology
from spire_fabric.topology._durations import format_duration

__all__ = [
    "ALERT_NAMES",
    "render_alert_rules",
    "render_alertmanager_config",
    "render_prometheus_config",
]

ALERT_NAMES = (
    "SpireServerDown",
    "SpireAgentDown",
    "WorkloadSvidNotRotating",
    "FederatedBundleStale",
    "SpireServerApiErrors",
    "GatewayErrors",
    "AuthzDenialsSpike",
    "DatastoreUnreachable",
)

# SPIRE's default refresh hint (pkg/server/bundle/client/manager.go defaultRefreshInterval)
DEFAULT_REFRESH_HINT = timedelta(minutes=5)
# gRPC codes that are the server's fault, not the caller's (PermissionDenied, NotFound,
# InvalidArgument, ... are answers, not errors)
SERVER_FAULT_CODES = "Unknown|Internal|Unavailable|DataLoss|DeadlineExceeded"
# A call counter's summary, not its count
_NOT_ELAPSED = '__name__!~".+_elapsed_time.*"'
DEPLOY = "python -m spire_fabric.deploy"
GHOSTUNNEL_METRICS_PATH = "/_metrics/prometheus"


def _require(topology: Topology) -> Monitoring:
    if topology.monitoring is None:
        raise ValueError(f"topology {topology.name!r} has no `monitoring:` to render")
    return topology.monitoring


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)


def _d(value: timedelta) -> str:
    return format_duration(value)


def render_alert_rules(topology: Topology) -> str:
    """The rules file: one group of the ALERT_NAMES alerts, each with a summary naming the
    component and a runbook line. ``for:`` durations are multiples of the scrape interval,
    so a fault fires after the same number of missed scrapes whatever the interval."""
    m = _require(topology)
    scrape = m.scrape_interval
    hints = [
        s.bundle_endpoint.refresh_hint or DEFAULT_REFRESH_HINT
        for s in topology.servers
        if s.bundle_endpoint is not None
    ]
    hint = max(hints, default=DEFAULT_REFRESH_HINT)
    fetch = "spire_server_bundle_manager_fetch_federated_bundle"
    by_peer = "sum by (component, trust_domain_id)"
    requests = "spire_fabric_example_requests_total"
    decisions = "spire_fabric_example_authorization_decisions_total"
    edge = m.edge_workload

    def rule(
        alert: str, expr: str, wait: timedelta, severity: str, summary: str, runbook: str
    ) -> dict[str, Any]:
        return {
            "alert": alert,
            "expr": expr,
            "for": _d(wait),
            "labels": {"severity": severity},
            "annotations": {"summary": summary, "runbook": runbook},
        }

    rules = [
        rule(
            "SpireServerDown",
            'up{job="spire-server"} == 0',
            3 * scrape,
            "critical",
            "SPIRE server {{ $labels.component }} is down: its telemetry at "
            "{{ $labels.instance }} does not answer",
            f"`{DEPLOY} status` shows its process and restarts; read its log in the state "
            f"directory's logs/; `{DEPLOY} up` starts what is missing.",
        ),
        rule(
            "SpireAgentDown",
            'up{job="spire-agent"} == 0',
            3 * scrape,
            "critical",
            "SPIRE agent {{ $labels.component }} is down: its telemetry at "
            "{{ $labels.instance }} does not answer; its workloads get no new SVIDs",
            f"`{DEPLOY} status` shows the agent's process (a stopped or hung process stays "
            f"'running'); read its log; `{DEPLOY} up` restarts what is missing.",
        ),
        rule(
            "WorkloadSvidNotRotating",
            "spire_fabric_example_svid_expiry_seconds"
            " < spire_fabric_example_svid_lifetime_seconds / 3",
            12 * scrape,
            "critical",
            "Workload {{ $labels.component }} holds an X509-SVID with less than a third "
            "of its TTL left ({{ $value | humanizeDuration }}): its agent stopped rotating it",
            f"Check the workload's agent (`{DEPLOY} status`, SpireAgentDown) and that its "
            f"entry still exists (`{DEPLOY} verify`); the agent rotates at half the TTL.",
        ),
        rule(
            "FederatedBundleStale",
            # increase() misses a counter's first value (a series born with 1), so a
            # success series born within the window counts as a success too
            f'({by_peer} (increase({fetch}{{status!="OK"}}[{_d(hint)}])) > 0)'
            f" unless on (component, trust_domain_id)"
            f' ({by_peer} (increase({fetch}{{status="OK"}}[{_d(hint)}])) > 0)'
            f" unless on (component, trust_domain_id)"
            f' ({by_peer} ({fetch}{{status="OK"}}'
            f' unless {fetch}{{status="OK"}} offset {_d(hint)}))',
            0 * scrape,
            "warning",
            "SPIRE server {{ $labels.component }} cannot refresh the bundle of "
            "{{ $labels.trust_domain_id }}: every fetch for a whole refresh hint "
            f"({_d(hint)}) failed, so its copy is older than the hint allows",
            f"Check the peer's bundle endpoint from this server (`{DEPLOY} verify` "
            "federation checks; the server log says why the fetch failed).",
        ),
        rule(
            "SpireServerApiErrors",
            f'sum by (component) (rate({{job="spire-server", '
            f'__name__=~"spire_server_rpc_.+", {_NOT_ELAPSED}, '
            f'status=~"{SERVER_FAULT_CODES}"}}[2m])) > 0',
            6 * scrape,
            "warning",
            "SPIRE server {{ $labels.component }} answers API calls with server errors "
            "({{ $value | humanize }}/s)",
            "Read the server's log for the failing calls; DatastoreUnreachable often "
            "comes with this.",
        ),
    ]
    if edge is not None:
        gateway = f'{requests}{{component="{edge}"}}'
        fivexx = f'{requests}{{component="{edge}", status=~"5.."}}'
        rules.append(
            rule(
                "GatewayErrors",
                f"sum by (component) (rate({fivexx}[1m]))"
                f" / sum by (component) (rate({gateway}[1m])) > 0.05",
                3 * scrape,
                "critical",
                "Gateway {{ $labels.component }} answers {{ $value | humanizePercentage }} "
                "of its requests with 5xx: the API behind it is unreachable or refuses it",
                "The gateway's log names each upstream failure (event=upstream-failed or "
                "upstream-refused); check the API workload and its grants for the gateway.",
            )
        )
    rules += [
        rule(
            "AuthzDenialsSpike",
            f'sum by (component) (rate({decisions}{{decision="deny"}}[2m])) > 1'
            f' and on (component) (sum by (component) (rate({decisions}{{decision="deny"}}[2m]))'
            f" / sum by (component) (rate({decisions}[2m]))) > 0.5",
            6 * scrape,
            "warning",
            "Workload {{ $labels.component }} denies more than half of its requests "
            "(over 1/s): a misconfigured caller or someone probing",
            "The workload's audit lines say who was denied and why (reason=); a wrong "
            "grant or an expired key shows as one caller, probing as many.",
        ),
        rule(
            "DatastoreUnreachable",
            f'sum by (component) (rate({{job="spire-server", '
            f'__name__=~"spire_server_datastore_.+", {_NOT_ELAPSED}, '
            f'status=~"{SERVER_FAULT_CODES}"}}[1m])) > 0',
            6 * scrape,
            "critical",
            "SPIRE server {{ $labels.component }} cannot use its datastore "
            "({{ $value | humanize }} failed calls/s)",
            "Check the database the server's datastore points at (connection, "
            "credentials, disk); the server log names the SQL error.",
        ),
    ]
    return _yaml({"groups": [{"name": "spire-fabric", "rules": rules}]})


def _target(host: str, port: int, labels: dict[str, str]) -> dict[str, Any]:
    return {"targets": [f"{host}:{port}"], "labels": labels}


def render_prometheus_config(topology: Topology, paths: RenderPaths) -> str:
    """Prometheus' config for the local target: every server's and agent's telemetry,
    every workload's /metrics and every sidecar's on its status port (``topology`` as the
    local target runs it: ports moved), the rules file, and Alertmanager."""
    m = _require(topology)
    if not paths.is_local:
        raise ValueError("the Kubernetes target's Prometheus config is not rendered yet")
    servers = [
        _target(
            s.host, s.ports.telemetry, {"component": s.name, "trust_domain": s.trust_domain.name}
        )
        for s in topology.servers
        if s.ports.telemetry is not None
    ]
    agents = [
        _target(a.host, a.telemetry_port, {"component": a.name, "server": a.server})
        for a in topology.agents
        if a.telemetry_port is not None
    ]
    workloads = [
        _target("127.0.0.1", w.run.metrics_port, {"component": w.name, "agent": w.agent})
        for w in topology.workloads
        if w.run is not None and w.run.metrics_port is not None
    ]
    # a sidecar's status port: ghostunnel's own Prometheus text at /_metrics/prometheus
    # (v1.8.4 main.go; /_metrics alone is JSON), the files-mode helper's at /metrics
    ghostunnels: list[dict[str, Any]] = []
    helpers: list[dict[str, Any]] = []
    for w in topology.workloads:
        for sc in w.sidecars:
            if sc.status_port is not None:
                labels = {"component": f"{w.name}/{sc.name}", "workload": w.name}  # as in status
                (helpers if sc.mode == "files" else ghostunnels).append(
                    _target("127.0.0.1", sc.status_port, labels))
    jobs: list[dict[str, Any]] = [
        {"job_name": "prometheus",
         "static_configs": [_target("127.0.0.1", m.prometheus_port, {"component": "prometheus"})]},
        {"job_name": "alertmanager",
         "static_configs": [
             _target("127.0.0.1", m.alertmanager_port, {"component": "alertmanager"})]},
    ]  # fmt: skip
    for name, targets, path in (("spire-server", servers, None), ("spire-agent", agents, None),
                                ("workload", workloads, None),
                                ("ghostunnel", ghostunnels, GHOSTUNNEL_METRICS_PATH),
                                ("svid-helper", helpers, None)):  # fmt: skip
        if targets:
            job: dict[str, Any] = {"job_name": name, "static_configs": targets}
            if path is not None:
                job["metrics_path"] = path
            jobs.append(job)
    document = {
        "global": {
            "scrape_interval": _d(m.scrape_interval),
            # a hung target (a stopped process) times out within one interval
            "scrape_timeout": _d(m.scrape_interval),
            "evaluation_interval": _d(m.evaluation_interval),
            "external_labels": {"deployment": topology.name},
        },
        "rule_files": [paths.prometheus_rules()],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{m.alertmanager_port}"]}]}
            ]
        },
        "scrape_configs": jobs,
    }
    return _yaml(document)


def render_alertmanager_config(topology: Topology) -> str:
    """Alertmanager's config: alerts grouped by name and component, to a receiver that
    sends nothing. Alerts are read from Alertmanager's API (the dashboard, `deploy status`,
    `verify`); a user adds a real receiver (email, webhook) here."""
    m = _require(topology)
    document = {
        "route": {
            "receiver": "api-only",
            "group_by": ["alertname", "component"],
            "group_wait": _d(m.evaluation_interval),
            "group_interval": "1m",
            "repeat_interval": "4h",
        },
        "receivers": [{"name": "api-only"}],
    }
    return _yaml(document)
