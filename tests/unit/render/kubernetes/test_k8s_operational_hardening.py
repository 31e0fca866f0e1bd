"""Operational hardening of the servers and workloads (issue 27, item 8): priority class,
requests and limits on every container, no service-account token where none is needed,
telemetry and health inside the cluster only."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_manifest_checks import pod_spec

from spire_fabric.render.kubernetes import identity_probe_pod, render_kubernetes_objects
from spire_fabric.topology import PRESET_NAMES, preset

Obj = dict[str, Any]
RESOURCES = ("cpu", "memory", "ephemeral-storage")
# The agent DaemonSets' containers (agent, CSI driver and registrar): sized for a node of
# their own, so they are left out of the per-cluster half-core budget below.
AGENT_CONTAINERS = {"spire-agent", "spiffe-csi-driver", "node-driver-registrar"}


def _pods(name: str) -> list[tuple[str, Obj]]:
    """(owner, pod spec) of every pod the renderer makes for preset ``name``, the identity
    probe pods of its workloads included."""
    t = preset(name)
    out = [
        (f"{o['kind']}/{o['metadata']['name']}", spec)
        for o in render_kubernetes_objects(t)
        if (spec := pod_spec(o)) is not None
    ]
    for w in t.workloads:
        if w.kubernetes is not None:
            out.append((f"probe/{w.name}", identity_probe_pod(t, w, f"probe-{w.name}")["spec"]))
    return out


def _containers(name: str, *, agents: bool) -> list[tuple[str, Obj]]:
    return [
        (f"{owner}/{c['name']}", c)
        for owner, spec in _pods(name)
        for c in spec["containers"] + spec.get("initContainers", [])
        if (c["name"] in AGENT_CONTAINERS) == agents
    ]


def _unsized(containers: list[tuple[str, Obj]]) -> list[str]:
    bad = []
    for where, c in containers:
        r = c.get("resources", {})
        for kind in ("requests", "limits"):
            missing = [k for k in RESOURCES if k not in r.get(kind, {})]
            if missing:
                bad.append(f"{where}: no {kind} {', '.join(missing)}")
    return bad


def _quantity(text: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _assert_sized(containers: list[tuple[str, Obj]]) -> None:
    """Every container has requests and limits of each resource, requests within limits."""
    assert containers
    assert _unsized(containers) == []
    for where, c in containers:
        r = c["resources"]
        for k in RESOURCES:
            assert _quantity(r["requests"][k]) <= _quantity(r["limits"][k]), (where, k)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_server_workload_and_probe_container_has_requests_and_limits(name):
    _assert_sized(_containers(name, agents=False))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_agent_and_csi_container_has_requests_and_limits(name):
    _assert_sized(_containers(name, agents=True))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_servers_mysql_and_workloads_of_a_cluster_request_under_half_a_core(name):
    # the test clusters' nodes have 2 cores shared with the control plane
    t = preset(name)
    for cluster in t.clusters:
        cpu = sum(
            _quantity(c["resources"]["requests"]["cpu"])
            for o in render_kubernetes_objects(t)
            if o["metadata"]["labels"].get("spire-fabric.io/cluster") == cluster.name
            and (spec := pod_spec(o)) is not None
            for c in spec["containers"]
            if c["name"] not in AGENT_CONTAINERS
        )
        assert 0 < cpu <= 0.5, (cluster.name, cpu)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_servers_run_at_system_cluster_critical_priority(name):
    servers = [s for owner, s in _pods(name) if owner.startswith("StatefulSet/")]
    assert servers
    assert {s.get("priorityClassName") for s in servers} == {"system-cluster-critical"}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_servers_and_agents_keep_their_token_everything_else_gets_none(name):
    # servers: k8s_psat TokenReview, BundlePublisher, controller manager; agents: the k8s
    # workload attestor authenticates to the kubelet with it. The CSI driver, workloads,
    # MySQL and the probes never call the API.
    for owner, spec in _pods(name):
        csi = owner.endswith("-csi-driver")
        if owner.startswith("StatefulSet/") or (owner.startswith("DaemonSet/") and not csi):
            assert spec.get("automountServiceAccountToken") is not False, owner
        else:
            assert spec["automountServiceAccountToken"] is False, owner


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_telemetry_and_health_ports_are_in_no_service(name):
    t = preset(name)
    objects = render_kubernetes_objects(t)
    services = [o for o in objects if o["kind"] == "Service"]
    # monitoring's discovery Services are headless: DNS names of the pods, no address or
    # NodePort that would carry traffic to the port
    discovery = [o for o in services if o["metadata"]["name"].endswith("-metrics")]
    assert all(o["spec"]["clusterIP"] == "None" and o["spec"]["type"] == "ClusterIP"
               and "nodePort" not in o["spec"]["ports"][0] for o in discovery)  # fmt: skip
    assert bool(discovery) is (t.monitoring is not None)
    targets = {
        str(p.get("targetPort"))
        for o in services
        if o not in discovery
        for p in o["spec"]["ports"]
    }
    container_ports = {
        p["name"]
        for o in objects
        if (spec := pod_spec(o)) is not None
        for c in spec["containers"]
        for p in c.get("ports", [])
    }
    assert "telemetry" in container_ports
    assert not targets & {"telemetry", "health", "healthz"}
    numbers = {s.ports.telemetry for s in t.servers} | {s.ports.health for s in t.servers}
    assert not targets & {str(n) for n in numbers}


@pytest.mark.parametrize("audit", [True, False])
def test_an_audited_server_shares_its_processes_with_the_controller_manager(audit):
    # SPIRE's audit log serves the socket through a peer tracker that finds the caller
    # in /proc: the sidecars (controller manager; the readiness gate of the replicated
    # downstream server) must be in the server's PID namespace, or they cannot call
    import dataclasses

    t = preset("enterprise")
    servers = tuple(dataclasses.replace(s, audit_log_enabled=audit) for s in t.servers)
    t = dataclasses.replace(t, servers=servers)
    for o in render_kubernetes_objects(t):
        if o["kind"] == "StatefulSet":
            spec = o["spec"]["template"]["spec"]
            sidecars = {c["name"] for c in spec["containers"][1:]}
            gate = {"readiness-gate"} if o["spec"]["replicas"] > 1 else set()
            assert sidecars == {"spire-controller-manager"} | gate
            assert spec.get("shareProcessNamespace", False) is audit


def test_a_server_without_controller_manager_shares_nothing():
    objects = render_kubernetes_objects(preset("crd-free"))
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    assert "shareProcessNamespace" not in sts["spec"]["template"]["spec"]
