"""NetworkPolicies: walked like an enforcer walks them, every port each rendered pod
listens on is reachable by exactly who the rules say (docs/kubernetes-target.md).

The walker below implements the NetworkPolicy semantics we rely on (policies add up; a pod
no policy selects takes anything; a peer with both selectors is an AND; a rule without
``from`` admits anyone; ports by number or by the container port's name). The sources are
every pod template the renderer makes, one unlabelled pod in each of our namespaces, one
in a foreign namespace, and "outside" (a host or a node through a NodePort).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from spire_fabric.render.kubernetes import (
    cluster_of,
    mysql_instance,
    render_kubernetes_objects,
    staged_objects,
)
from spire_fabric.topology import (
    PRESET_NAMES,
    LocalRun,
    Topology,
    WorkloadKubernetes,
    kubernetes_view,
    monitoring_cluster,
    preset,
    workload_callers,
)

OUTSIDE = "outside"
NS_NAME = "kubernetes.io/metadata.name"
APP = "app.kubernetes.io/name"
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclasses.dataclass(frozen=True)
class Pod:
    name: str  # its app label, or a made-up name for the unlabelled probes
    namespace: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[tuple[str, int], ...]  # (name, containerPort)


def _pods(objects: list[dict[str, Any]], cluster: str) -> list[Pod]:
    out = []
    for o in objects:
        if o["kind"] not in POD_KINDS or cluster_of(o) != cluster:
            continue
        tmpl = o["spec"]["template"]
        labels = tmpl["metadata"]["labels"]
        ports = tuple((p.get("name", ""), p["containerPort"])
                      for c in tmpl["spec"]["containers"] for p in c.get("ports", ()))
        out.append(Pod(labels[APP], o["metadata"]["namespace"], tuple(sorted(labels.items())),
                       ports))  # fmt: skip
    return out


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # all we render
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_admits(peer: dict[str, Any], source: Pod | str, policy_ns: str) -> bool:
    assert set(peer) <= {"namespaceSelector", "podSelector"}, peer  # no ipBlock rendered
    if source == OUTSIDE:
        return False
    assert isinstance(source, Pod)
    if "namespaceSelector" in peer:
        ns_ok = _matches(peer["namespaceSelector"], {NS_NAME: source.namespace})
    else:
        ns_ok = source.namespace == policy_ns
    return ns_ok and _matches(peer.get("podSelector", {}), dict(source.labels))


def _port_in(rule: dict[str, Any], name: str, number: int) -> bool:
    if "ports" not in rule:
        return True
    return any(p.get("protocol", "TCP") == "TCP" and p["port"] in (name, number)
               for p in rule["ports"])  # fmt: skip


def reachable(policies: list[dict[str, Any]], target: Pod, port: tuple[str, int],
              source: Pod | str) -> bool:  # fmt: skip
    selecting = [p for p in policies if p["metadata"]["namespace"] == target.namespace
                 and "Ingress" in p["spec"]["policyTypes"]
                 and _matches(p["spec"]["podSelector"], dict(target.labels))]  # fmt: skip
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get("ingress", []):
            if not _port_in(rule, *port):
                continue
            if "from" not in rule or any(
                _peer_admits(peer, source, target.namespace) for peer in rule["from"]
            ):
                return True
    return False


def reach_table(t: Topology) -> dict[tuple[str, str, str], set[str]]:
    """(cluster, pod, port name) -> names of the sources that may connect."""
    objects = render_kubernetes_objects(t)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    table: dict[tuple[str, str, str], set[str]] = {}
    for c in t.clusters:
        pods = _pods(objects, c.name)
        mine = [p for p in policies if cluster_of(p) == c.name]
        strangers = [Pod(f"stranger@{ns}", ns, (), ()) for ns in (*c.namespaces, "elsewhere")]
        sources: list[Pod | str] = [*pods, *strangers, OUTSIDE]
        for target in pods:
            for port in target.ports:
                table[(c.name, target.name, port[0])] = {
                    s if isinstance(s, str) else s.name
                    for s in sources
                    if reachable(mine, target, port, s)
                }
    return table


EVERYONE = "everyone"


def _expand(t: Topology, cluster: str, expected: set[str]) -> set[str]:
    if expected != {EVERYONE}:
        return expected
    objects = render_kubernetes_objects(t)
    names = {p.name for p in _pods(objects, cluster)}
    c = t.cluster(cluster)
    return names | {f"stranger@{ns}" for ns in (*c.namespaces, "elsewhere")} | {OUTSIDE}


# "prometheus": the Prometheus pod of the same cluster (monitoring:, in the preset)
ENTERPRISE = {
    ("upstream-cluster", "spire-upstream-server", "api"): {"upstream-agent"},
    ("upstream-cluster", "spire-upstream-server", "federation"): {EVERYONE},
    ("upstream-cluster", "spire-upstream-server", "health"): set(),
    ("upstream-cluster", "spire-upstream-server", "telemetry"): {"prometheus"},
    ("upstream-cluster", "spire-upstream-server", "healthz"): set(),  # controller manager
    ("upstream-cluster", "spire-upstream-mysql", "mysql"): {"spire-upstream-server"},
    ("upstream-cluster", "upstream-agent", "health"): set(),
    ("upstream-cluster", "upstream-agent", "telemetry"): {"prometheus"},
    # federated by the downstream cluster's Prometheus through its NodePort
    ("upstream-cluster", "prometheus", "http"): {EVERYONE},
    ("downstream-cluster", "spire-downstream-server", "api"): {
        "downstream-agent-1", "downstream-agent-2", "downstream-agent-3"},
    ("downstream-cluster", "spire-downstream-server", "federation"): {EVERYONE},
    ("downstream-cluster", "spire-downstream-server", "health"): set(),
    ("downstream-cluster", "spire-downstream-server", "telemetry"): {"prometheus"},
    ("downstream-cluster", "spire-downstream-server", "healthz"): set(),
    ("downstream-cluster", "spire-downstream-server", "ready-gate"): set(),  # the kubelet's
    ("downstream-cluster", "spire-downstream-mysql", "mysql"): {"spire-downstream-server"},
    # api-poller through its client sidecar
    ("downstream-cluster", "enterprise-api", "https"): {"data-processor", "security-gateway",
                                                        "api-poller"},
    ("downstream-cluster", "security-gateway", "https"): {EVERYONE},  # NodePort 30080
    # inventory's server sidecar: who its allow list names; catalog: nobody calls it
    ("downstream-cluster", "inventory", "https"): {"enterprise-api", "security-gateway"},
    ("downstream-cluster", "catalog", "https"): set(),
    **{("downstream-cluster", w, "metrics"): {"prometheus"}
       for w in ("enterprise-api", "data-processor", "security-gateway")},
    **{("downstream-cluster", f"downstream-agent-{i}", port): (
        {"prometheus"} if port == "telemetry" else set())
       for i in (1, 2, 3) for port in ("health", "telemetry")},
    # read through a port-forward (no policy sees it); Alertmanager by its Prometheus alone
    ("downstream-cluster", "prometheus", "http"): set(),
    ("downstream-cluster", "alertmanager", "http"): {"prometheus"},
}  # fmt: skip

NESTED = {
    # the child server mints its CA through the root's API: a downstream workload of it
    ("nested-cluster", "spire-root-server", "api"): {"root-agent", "spire-child-server"},
    ("nested-cluster", "spire-child-server", "api"): {"child-agent"},
    ("nested-cluster", "spire-root-server", "health"): set(),
    ("nested-cluster", "spire-child-server", "health"): set(),
    ("nested-cluster", "spire-root-server", "telemetry"): set(),
    ("nested-cluster", "spire-child-server", "telemetry"): set(),
    ("nested-cluster", "spire-root-server", "healthz"): set(),
    ("nested-cluster", "spire-child-server", "healthz"): set(),
    ("nested-cluster", "root-agent", "health"): set(),
    ("nested-cluster", "root-agent", "telemetry"): set(),
    ("nested-cluster", "child-agent", "health"): set(),
    ("nested-cluster", "child-agent", "telemetry"): set(),
    ("nested-cluster", "example-app", "https"): set(),  # called by no one
}


@pytest.mark.parametrize(("name", "expected"), [("enterprise", ENTERPRISE),
                                                ("nested", NESTED)])  # fmt: skip
def test_every_port_is_reachable_by_exactly_who_the_rules_say(name, expected):
    t = preset(name)
    table = reach_table(t)
    assert set(table) == set(expected), "a listening port the table does not cover"
    for key, who in expected.items():
        assert table[key] == _expand(t, key[0], who), key


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_fences_every_port_it_does_not_mean_to_open(name):
    """The rules, for each preset: health ports reach no one, telemetry and metrics only the
    cluster's Prometheus (none without monitoring), Alertmanager only Prometheus; a
    server API only its own agents and nested servers; MySQL only its server; the
    federation port and NodePort workloads everyone; other workloads only their callers."""
    t = kubernetes_view(preset(name)).topology  # what the Kubernetes target runs
    table = reach_table(t)
    assert table
    servers = {s.name: s for s in t.servers}
    workloads = {w.name: w for w in t.workloads}
    scrapers = {"prometheus"} if t.monitoring is not None else set()
    for (cluster, pod, port), who in table.items():
        if port in ("health", "healthz", "ready-gate"):
            assert who == set(), (pod, port, who)
        elif port in ("telemetry", "metrics"):  # the cluster's Prometheus alone
            assert who == scrapers, (pod, port, who)
        elif pod == "alertmanager":
            assert who == {"prometheus"}, who
        elif pod == "prometheus":  # federated through its NodePort, else port-forward only
            main = cluster == monitoring_cluster(t)
            assert (OUTSIDE in who) is not main and (who == set()) is main, (cluster, who)
        elif port == "api":
            children = {s.name for s in t.servers if getattr(s.upstream_authority, "server",
                                                            None) == pod}  # fmt: skip
            assert who == {a.name for a in t.agents_of(pod)} | children, (pod, who)
        elif port == "federation":
            assert servers[pod].bundle_endpoint is not None
            assert OUTSIDE in who and any(w.startswith("stranger@") for w in who)
        elif port == "mysql":
            owners = {s.name for s in t.servers
                      if (i := mysql_instance(s)) is not None and i.service == pod}
            assert len(owners) == 1 and who == owners, (pod, who)
        else:
            w = workloads[pod]
            assert w.kubernetes is not None
            if w.kubernetes.node_port is not None:
                assert OUTSIDE in who
            else:
                assert who == {c.name for c in workload_callers(t, w)}, (pod, who)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_each_namespace_denies_ingress_by_default_and_egress_is_left_open(name):
    t = preset(name)
    policies = [o for o in render_kubernetes_objects(t) if o["kind"] == "NetworkPolicy"]
    for c in kubernetes_view(t).topology.clusters:  # monitoring: its namespace too
        denies = {p["metadata"]["namespace"] for p in policies if cluster_of(p) == c.name
                  and p["metadata"]["name"] == "default-deny-ingress"}  # fmt: skip
        assert denies == set(c.namespaces)
    for p in policies:
        assert p["apiVersion"] == "networking.k8s.io/v1"
        assert p["spec"]["policyTypes"] == ["Ingress"]
        if p["metadata"]["name"] == "default-deny-ingress":
            assert p["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_policies_are_applied_with_the_namespaces_before_any_pod(name):
    for _, file, objects in staged_objects(preset(name)):
        kinds = {o["kind"] for o in objects}
        if "NetworkPolicy" in kinds:
            assert file == "00-namespaces.yaml"
        if kinds & set(POD_KINDS):
            assert file > "00-namespaces.yaml"


def test_callers_come_from_url_placeholders_only():
    # without sidecars, whose callers are test_sidecar_validation.py's
    t = kubernetes_view(preset("enterprise"), sidecars=False).topology
    api = t.workload("enterprise-api")
    assert [w.name for w in workload_callers(t, api)] == ["data-processor", "security-gateway"]
    assert workload_callers(t, t.workload("security-gateway")) == ()
    # naming the API's SPIFFE ID or port makes no caller; naming its URL does
    gw = t.workload("security-gateway")
    assert gw.run is not None
    no_url = dataclasses.replace(gw.run, args=("--upstream-id", "{spiffe_id:enterprise-api}",
                                               "--port", "{port:enterprise-api}"))  # fmt: skip
    t2 = dataclasses.replace(t, workloads=tuple(
        dataclasses.replace(w, run=no_url) if w.name == gw.name else w for w in t.workloads))
    assert [w.name for w in workload_callers(t2, api)] == ["data-processor"]


def test_a_caller_in_another_namespace_is_admitted_by_namespace_and_labels():
    """A caller that moves to a namespace of its own is followed there (the policies
    come from the topology, not from fixed namespaces)."""
    t = preset("enterprise")
    cluster = "downstream-cluster"
    clusters = tuple(
        dataclasses.replace(c, namespaces=(*c.namespaces, "processing"))
        if c.name == cluster else c for c in t.clusters)  # fmt: skip
    dp = t.workload("data-processor")
    assert dp.kubernetes is not None
    moved = dataclasses.replace(dp, kubernetes=dataclasses.replace(
        dp.kubernetes, namespace="processing"))  # fmt: skip
    t2 = dataclasses.replace(t, clusters=clusters, workloads=tuple(
        moved if w.name == dp.name else w for w in t.workloads))  # fmt: skip
    table = reach_table(t2)
    assert table[(cluster, "enterprise-api", "https")] == {"data-processor", "security-gateway",
                                                           "api-poller"}
    assert "stranger@processing" not in table[(cluster, "enterprise-api", "https")]


def test_a_workload_without_callers_or_node_port_gets_no_allow_policy():
    t = preset("basic")
    names = {o["metadata"]["name"] for o in render_kubernetes_objects(t)
             if o["kind"] == "NetworkPolicy"}  # fmt: skip
    assert "workload-example-app" not in names
    assert isinstance(t.workload("example-app").run, LocalRun)
    assert isinstance(t.workload("example-app").kubernetes, WorkloadKubernetes)
