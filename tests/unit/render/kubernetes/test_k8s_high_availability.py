"""What a server with replicas becomes on Kubernetes (enterprise: the downstream server)."""

from __future__ import annotations

import dataclasses

from ha_topology import enterprise_ha

from spire_fabric.render import RenderPaths, render_agent_config, render_server_config
from spire_fabric.render.kubernetes import render_kubernetes_objects
from spire_fabric.topology import AgentKubernetes, Topology, service_host

DOWN = "spire-downstream-server"
UP = "spire-upstream-server"
K8S = RenderPaths.kubernetes()


def _objects(t: Topology, kind: str, name: str) -> list[dict]:
    return [
        o
        for o in render_kubernetes_objects(t)
        if o["kind"] == kind and o["metadata"]["name"] == name
    ]


def _stateful_set(t: Topology, name: str) -> dict:
    (sts,) = _objects(t, "StatefulSet", name)
    return sts


def test_downstream_server_runs_two_parallel_replicas_spread_over_nodes():
    spec = _stateful_set(enterprise_ha(), DOWN)["spec"]
    assert spec["replicas"] == 2
    assert spec["podManagementPolicy"] == "Parallel"
    (term,) = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    )


def test_memory_keys_on_a_shared_datastore_leave_no_claim_to_pin_a_replica():
    spec = _stateful_set(enterprise_ha(), DOWN)["spec"]
    assert "volumeClaimTemplates" not in spec
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_the_single_upstream_server_keeps_its_claim_and_gets_no_budget():
    t = enterprise_ha()
    spec = _stateful_set(t, UP)["spec"]
    assert spec["replicas"] == 1
    assert "podManagementPolicy" not in spec and "affinity" not in spec["template"]["spec"]
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert _objects(t, "PodDisruptionBudget", UP) == []


def test_disk_keys_with_replicas_give_each_replica_its_own_claim():
    t = enterprise_ha()
    k = t.server(DOWN).kubernetes
    assert k is not None
    servers = tuple(
        dataclasses.replace(s, kubernetes=dataclasses.replace(k, key_manager="disk"))
        if s.name == DOWN
        else s
        for s in t.servers
    )
    t = dataclasses.replace(t, servers=servers)
    spec = _stateful_set(t, DOWN)["spec"]
    assert spec["replicas"] == 2
    assert [c["metadata"]["name"] for c in spec["volumeClaimTemplates"]] == ["data"]
    assert 'KeyManager "disk"' in render_server_config(t, DOWN, K8S)


def test_disruption_budget_lets_one_replica_go_at_a_time():
    t = enterprise_ha()
    (pdb,) = _objects(t, "PodDisruptionBudget", DOWN)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["namespace"] == "spire-downstream"
    assert pdb["spec"]["maxUnavailable"] == 1
    selector = _stateful_set(t, DOWN)["spec"]["selector"]
    assert pdb["spec"]["selector"] == selector


def test_readiness_is_spires_ready_check_on_every_replica():
    """Directly with disk keys; through the readiness gate (which asks it first) with
    memory keys."""
    assert _server_readiness(enterprise_ha("disk"), DOWN)["httpGet"] == {
        "path": "/ready",
        "port": "health",
    }
    containers = _stateful_set(enterprise_ha(), DOWN)["spec"]["template"]["spec"]["containers"]
    gate = next(c for c in containers if c["name"] == "readiness-gate")
    assert "--health-port=8080" in gate["args"]
    assert 'ready_path = "/ready"' in render_server_config(enterprise_ha(), DOWN, K8S)


def _server_readiness(t: Topology, name: str) -> dict:
    containers = _stateful_set(t, name)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "spire-server")["readinessProbe"]


def test_a_replica_with_memory_keys_joins_the_service_once_its_new_jwt_key_has_spread():
    """Each start of such a replica activates a new JWT key at once; its readiness gate
    keeps it out of the Service for longer than agents take to fetch the bundle (5 s), so
    nothing it signs meets a verifier without its key. The server container's probe asks
    the gate, so a restart in the pod closes it too. Disk keys survive a restart, and one
    replica has no other to serve meanwhile: neither has a gate."""
    from spire_fabric.render.kubernetes._servers import (
        NEW_KEY_PROPAGATION_SECONDS,
        READINESS_GATE_PORT,
    )

    assert NEW_KEY_PROPAGATION_SECONDS >= 3 * 5
    probe = _server_readiness(enterprise_ha(), DOWN)
    assert probe["httpGet"] == {"path": "/ready", "port": READINESS_GATE_PORT}
    assert "initialDelaySeconds" not in probe and probe["periodSeconds"] == 1
    pod = _stateful_set(enterprise_ha(), DOWN)["spec"]["template"]["spec"]
    (gate,) = [c for c in pod["containers"] if c["name"] == "readiness-gate"]
    assert gate["command"] == ["python", "-m", "spire_fabric.server.readiness"]
    assert f"--delay={NEW_KEY_PROPAGATION_SECONDS}" in gate["args"]
    assert gate["image"] == enterprise_ha().kubernetes.images.workload
    assert [(m["name"], m["readOnly"]) for m in gate["volumeMounts"]] == [("server-socket", True)]
    for t, name in ((enterprise_ha("disk"), DOWN), (enterprise_ha(), UP)):  # disk; 1 replica
        assert _server_readiness(t, name)["httpGet"] == {"path": "/ready", "port": "health"}
        pod = _stateful_set(t, name)["spec"]["template"]["spec"]
        assert "readiness-gate" not in [c["name"] for c in pod["containers"]]


def test_the_gate_args_are_what_its_command_line_takes():
    from spire_fabric.render.kubernetes._servers import readiness_gate_container
    from spire_fabric.server.readiness import _parser

    t = enterprise_ha()
    args = _parser().parse_args(readiness_gate_container(t, t.server(DOWN))["args"])
    assert args.health_port == t.server(DOWN).ports.health and args.delay == 15


def test_agents_dial_the_service_not_a_replica():
    t = enterprise_ha()
    (svc,) = _objects(t, "Service", DOWN)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == _stateful_set(t, DOWN)["spec"]["selector"]["matchLabels"]
    conf = render_agent_config(t, "downstream-agent-1", K8S)
    assert f'server_address = "{service_host(t.server(DOWN))}"' in conf


def test_rate_limits_are_rendered_for_replicas_and_kept_per_agent_ip():
    t = enterprise_ha()
    down = render_server_config(t, DOWN, K8S)
    assert "ratelimit {\n        attestation = true\n        signing = true\n    }" in down
    assert "ratelimit" not in render_server_config(t, UP, K8S)


def test_agents_behind_a_node_port_turn_the_attestation_limit_off():
    t = enterprise_ha()
    agents = tuple(
        dataclasses.replace(
            a,
            kubernetes=AgentKubernetes(
                cluster="upstream-cluster", namespace="spire-upstream-agents"
            ),
        )
        if a.name == "downstream-agent-3"
        else a
        for a in t.agents
    )
    t = dataclasses.replace(t, agents=agents)
    down = render_server_config(t, DOWN, K8S)
    assert "attestation = false" in down and "signing = true" in down
