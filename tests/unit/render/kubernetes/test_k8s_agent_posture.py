"""The agent's posture on Kubernetes (issue 27, items 1, 2, 7 and the agent parts of 8): a
verified kubelet, nodes/pods rather than nodes/proxy, a uid of its own, the memory key
manager for k8s_psat agents, no unix attestor where nothing needs it, and the node-critical
priority and bounded resources of its DaemonSets. Each opt-in back to the weaker setting
is rendered exactly as asked and warned about."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from rich.console import Console

from spire_fabric.deploy._output import print_warnings
from spire_fabric.render._agent import SERVICE_ACCOUNT_CA, render_agent_config
from spire_fabric.render._paths import RenderPaths
from spire_fabric.render.kubernetes import render_kubernetes_objects
from spire_fabric.render.kubernetes._common import AGENT_UID
from spire_fabric.topology import (
    PRESET_NAMES,
    Topology,
    agent_workload_attestors,
    kubernetes_view,
    posture_warnings,
    preset,
    validate_topology,
)

K8S = RenderPaths.kubernetes()


def with_agent(t: Topology, name: str, **kubernetes: Any) -> Topology:
    """``t`` with agent ``name``'s kubernetes settings changed, validated."""
    agents = tuple(
        dataclasses.replace(a, kubernetes=dataclasses.replace(a.kubernetes, **kubernetes))
        if a.name == name and a.kubernetes is not None
        else a
        for a in t.agents
    )
    return validate_topology(dataclasses.replace(t, agents=agents))


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in objects:
        spec = o.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") if "template" in spec else None
        if o["kind"] == "Pod":
            pod = spec
        if pod is not None:
            out.append((f"{o['kind']} {o['metadata']['name']}", pod))
    return out


def daemon_set(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"] == name)


def agent_conf(objects: list[dict[str, Any]], agent: str) -> str:
    cm = next(o for o in objects if o["kind"] == "ConfigMap"
              and o["metadata"]["name"] == f"{agent}-config")  # fmt: skip
    return str(cm["data"]["agent.conf"])


# --- 1. the kubelet is verified -----------------------------------------------------------


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_no_preset_skips_kubelet_verification(name: str) -> None:
    for o in render_kubernetes_objects(preset(name)):
        if o["kind"] == "ConfigMap" and "agent.conf" in (o.get("data") or {}):
            conf = o["data"]["agent.conf"]
            assert "skip_kubelet_verification" not in conf, o["metadata"]["name"]
            if 'WorkloadAttestor "k8s"' in conf:
                assert f'kubelet_ca_path = "{SERVICE_ACCOUNT_CA}"' in conf


def test_skip_is_rendered_only_when_opted_in_and_warned_about_naming_the_agent() -> None:
    t = with_agent(preset("enterprise"), "downstream-agent-2", kubelet_verification="skip")
    objects = render_kubernetes_objects(t)
    assert "skip_kubelet_verification = true" in agent_conf(objects, "downstream-agent-2")
    assert "kubelet_ca_path" not in agent_conf(objects, "downstream-agent-2")
    assert "skip_kubelet_verification" not in agent_conf(objects, "downstream-agent-1")
    warnings = posture_warnings(t, "kubernetes")
    assert len(warnings) == 1
    assert warnings[0].startswith("agent downstream-agent-2: kubelet_verification is skip")
    assert posture_warnings(t, "local") == ()
    assert posture_warnings(preset("enterprise"), "kubernetes") == ()
    console = Console(record=True, width=300)
    print_warnings(t, "kubernetes", console)
    assert console.export_text().startswith("warning: agent downstream-agent-2: kubelet_")


def test_host_ca_mounts_the_nodes_ca_file_and_points_the_attestor_at_it() -> None:
    t = with_agent(preset("enterprise"), "upstream-agent", kubelet_verification="host-ca",
                   kubelet_ca_host_path="/etc/kubernetes/pki/kubelet-ca.crt")  # fmt: skip
    objects = render_kubernetes_objects(t)
    conf = agent_conf(objects, "upstream-agent")
    assert 'kubelet_ca_path = "/run/spire/kubelet-ca/ca.crt"' in conf
    pod = daemon_set(objects, "upstream-agent")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "kubelet-ca")
    # the file only: its directory on a control-plane node holds the CA's key
    assert volume["hostPath"] == {"path": "/etc/kubernetes/pki/kubelet-ca.crt", "type": "File"}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "kubelet-ca")
    assert mount == {"name": "kubelet-ca", "mountPath": "/run/spire/kubelet-ca/ca.crt",
                     "readOnly": True}  # fmt: skip
    other = daemon_set(objects, "downstream-agent-1")["spec"]["template"]["spec"]
    assert "kubelet-ca" not in {v["name"] for v in other["volumes"]}


# --- 2. nodes/pods, not nodes/proxy -------------------------------------------------------


def attestor_rules(objects: list[dict[str, Any]]) -> list[list[str]]:
    roles = [o for o in objects if o["kind"] == "ClusterRole"
             and o["metadata"]["name"].endswith("-workload-attestor")]  # fmt: skip
    return [r["resources"] for o in roles for r in o["rules"]]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_no_preset_grants_nodes_proxy(name: str) -> None:
    objects = render_kubernetes_objects(preset(name))
    for o in objects:
        if o["kind"] in ("ClusterRole", "Role"):
            for rule in o["rules"]:
                assert "nodes/proxy" not in rule["resources"], o["metadata"]["name"]
    if name == "enterprise":
        assert attestor_rules(objects) == [["nodes/pods"], ["nodes/pods"]]


def test_nodes_proxy_only_for_the_account_of_the_agent_that_opted_in_and_warned() -> None:
    t = with_agent(preset("enterprise"), "upstream-agent", kubelet_access="nodes/proxy")
    assert attestor_rules(render_kubernetes_objects(t)) == [["nodes/proxy"], ["nodes/pods"]]
    (warning,) = posture_warnings(t, "kubernetes")
    assert warning.startswith("agent upstream-agent: kubelet_access is nodes/proxy")


# --- 3. the agent off root --------------------------------------------------------------


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_agent_runs_as_its_own_uid_that_no_other_pod_uses(name: str) -> None:
    objects = render_kubernetes_objects(preset(name))
    assert AGENT_UID not in (0, 1000, 999, 65532)
    for what, pod in pod_specs(objects):
        is_agent = pod.get("hostPID") is True
        ctx = pod.get("securityContext") or {}
        uids = {ctx.get("runAsUser")} | {
            (c.get("securityContext") or {}).get("runAsUser") for c in pod["containers"]
        }
        uids.discard(None)
        if is_agent:
            assert uids == {AGENT_UID}, what
            assert ctx["runAsNonRoot"] is True and ctx["runAsGroup"] == AGENT_UID
            (c,) = pod["containers"]
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
        else:
            assert AGENT_UID not in uids and ctx.get("runAsGroup") != AGENT_UID, what
            assert ctx.get("fsGroup") != AGENT_UID, what


def test_the_init_container_only_chowns_the_agents_directories_with_cap_chown_alone() -> None:
    t = preset("enterprise")
    objects = render_kubernetes_objects(t)
    pod = daemon_set(objects, "downstream-agent-1")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == t.kubernetes.images.agent_init
    assert init["command"] == ["chown", "-R", f"{AGENT_UID}:{AGENT_UID}",
                               "/run/spire/sockets", "/run/spire/data"]  # fmt: skip
    ctx = init["securityContext"]
    assert ctx["capabilities"] == {"add": ["CHOWN"], "drop": ["ALL"]}
    assert ctx["runAsUser"] == 0 and ctx["allowPrivilegeEscalation"] is False
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts == {"data": "/run/spire/data", "sockets": "/run/spire/sockets"}


def test_k8s_psat_agents_keep_keys_in_memory_join_token_agents_on_disk() -> None:
    psat = agent_conf(render_kubernetes_objects(preset("enterprise")), "upstream-agent")
    assert 'KeyManager "memory"' in psat and 'KeyManager "disk"' not in psat
    crd_free = preset("crd-free")
    (agent,) = crd_free.agents
    assert agent.kubernetes is not None and agent.kubernetes.node_attestor == "join_token"
    join = agent_conf(render_kubernetes_objects(crd_free), agent.name)
    assert 'KeyManager "disk"' in join and 'KeyManager "memory"' not in join
    local = render_agent_config(preset("enterprise"), "upstream-agent", RenderPaths.local("/x"))
    assert 'KeyManager "disk"' in local


# --- 4. operational hardening -------------------------------------------------------------


def test_agent_and_csi_daemon_sets_are_node_critical_with_bounded_containers() -> None:
    objects = render_kubernetes_objects(preset("enterprise"))
    sets = [o for o in objects if o["kind"] == "DaemonSet"]
    assert {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in sets} == {
        "agent", "csi-driver"}  # fmt: skip
    assert len(sets) == 8
    for o in sets:
        pod = o["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "system-node-critical", o["metadata"]["name"]
        for c in pod["containers"] + pod.get("initContainers", []):
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory", "ephemeral-storage"}, (
                    o["metadata"]["name"], c["name"])  # fmt: skip


def test_unix_attestor_is_off_where_every_selector_is_k8s_and_kept_where_one_is_not() -> None:
    t = kubernetes_view(preset("enterprise")).topology  # what the Kubernetes target runs
    for a in t.agents:
        assert "unix" in a.workload_attestors
        assert agent_workload_attestors(t, a, "kubernetes") == ("k8s",)
        assert 'WorkloadAttestor "unix"' not in agent_conf(render_kubernetes_objects(t), a.name)
    # a workload of downstream-agent-1 that asks for a uid keeps unix on that agent only
    w = next(w for w in t.workloads if w.agent == "downstream-agent-1")
    mixed = dataclasses.replace(w, selectors=(*w.selectors, "unix:uid:1000"))
    t2 = validate_topology(dataclasses.replace(
        t, workloads=tuple(mixed if x is w else x for x in t.workloads)))  # fmt: skip
    objects = render_kubernetes_objects(t2)
    assert 'WorkloadAttestor "unix"' in agent_conf(objects, "downstream-agent-1")
    assert 'WorkloadAttestor "unix"' not in agent_conf(objects, "downstream-agent-2")
    # locally the agents keep unix (no k8s there)
    assert agent_workload_attestors(t, t.agents[0], "local") == ("unix",)
