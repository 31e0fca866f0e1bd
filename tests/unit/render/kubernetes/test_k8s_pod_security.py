"""Pod Security: namespaces say "restricted" wherever the pods in them can live with it,
and the pods really do; only the agents (and their CSI drivers) get host access."""

from __future__ import annotations

import copy

import pytest
from k8s_manifest_checks import pod_spec, restricted_violations

from spire_fabric.render.kubernetes import render_kubernetes_objects
from spire_fabric.topology import PRESET_NAMES, preset

ENFORCE = "pod-security.kubernetes.io/enforce"
HOST_COMPONENTS = {"agent", "csi-driver"}


def _levels(objects: list[dict]) -> dict[tuple[str, str], str]:
    return {
        (o["metadata"]["labels"]["spire-fabric.io/cluster"], o["metadata"]["name"]): o["metadata"][
            "labels"
        ][ENFORCE]
        for o in objects
        if o["kind"] == "Namespace"
    }


def _pods(objects: list[dict]):
    for o in objects:
        spec = pod_spec(o)
        if spec is not None:
            cluster = o["metadata"]["labels"]["spire-fabric.io/cluster"]
            yield (cluster, o["metadata"]["namespace"]), o, spec


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_pod_in_a_restricted_namespace_satisfies_restricted(name):
    objects = render_kubernetes_objects(preset(name))
    levels = _levels(objects)
    checked = 0
    for where, o, spec in _pods(objects):
        if levels[where] == "restricted":
            assert restricted_violations(spec) == [], o["metadata"]["name"]
            checked += 1
    assert checked > 0  # every preset has its server in a restricted namespace


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_only_agents_and_their_csi_drivers_break_restricted(name):
    """Except that without cluster RBAC (no CSIDriver) a workload mounts its agent's socket
    directory, and that must be its only deviation."""
    topology = preset(name)
    for _, o, spec in _pods(render_kubernetes_objects(topology)):
        component = o["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in HOST_COMPONENTS:
            continue
        allowed = (
            ["volume spiffe-workload-api is ['hostPath']"]
            if topology.kubernetes.rbac == "namespace" and component == "workload"
            else []
        )
        assert restricted_violations(spec) == allowed, o["metadata"]["name"]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_pod_namespace_exists_and_privileged_ones_host_an_agent(name):
    objects = render_kubernetes_objects(preset(name))
    levels = _levels(objects)
    host_namespaces = {
        where
        for where, o, _ in _pods(objects)
        if o["metadata"]["labels"]["app.kubernetes.io/component"] in HOST_COMPONENTS
    }
    for where, _, _ in _pods(objects):
        assert where in levels
    privileged = {where for where, level in levels.items() if level == "privileged"}
    assert privileged <= host_namespaces | _hostpath_workload_namespaces(objects)


def _hostpath_workload_namespaces(objects):
    return {
        where
        for where, _, spec in _pods(objects)
        if any("hostPath" in v for v in spec.get("volumes", []))
    }


def _components(objects: list[dict]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for where, o, _ in _pods(objects):
        out.setdefault(where, set()).add(o["metadata"]["labels"]["app.kubernetes.io/component"])
    return out


CLUSTER_RBAC_PRESETS = [n for n in PRESET_NAMES if preset(n).kubernetes.rbac == "cluster"]


@pytest.mark.parametrize("name", CLUSTER_RBAC_PRESETS)
def test_privileged_namespaces_hold_only_agents_and_every_other_namespace_is_restricted(name):
    objects = render_kubernetes_objects(preset(name))
    components = _components(objects)
    levels = _levels(objects)
    assert set(levels.values()) == {"privileged", "restricted"}
    for where, level in levels.items():
        if level == "privileged":
            assert components.get(where), f"{where} is privileged but runs nothing"
            assert components[where] <= HOST_COMPONENTS, where
        else:
            assert level == "restricted", where
            assert not components.get(where, set()) & HOST_COMPONENTS, where


def test_crd_free_privileges_only_the_agents_and_the_hostpath_socket_workloads():
    """Without cluster RBAC there is no CSIDriver, so the workload's namespace must allow
    the hostPath socket mount; the agents still have a namespace of their own and the
    server's namespace still enforces restricted."""
    objects = render_kubernetes_objects(preset("crd-free"))
    levels = _levels(objects)
    assert levels == {
        ("spire-cluster", "spire"): "restricted",
        ("spire-cluster", "spire-agents"): "privileged",
        ("spire-cluster", "apps"): "privileged",
    }
    assert _components(objects) == {
        ("spire-cluster", "spire"): {"server"},
        ("spire-cluster", "spire-agents"): {"agent"},
        ("spire-cluster", "apps"): {"workload"},
    }


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_audit_and_warn_say_the_same_level_as_enforce(name):
    for o in render_kubernetes_objects(preset(name)):
        if o["kind"] == "Namespace":
            labels = o["metadata"]["labels"]
            level = labels[ENFORCE]
            assert labels["pod-security.kubernetes.io/audit"] == level
            assert labels["pod-security.kubernetes.io/warn"] == level


def test_enterprise_servers_and_workloads_enforce_restricted_and_agents_have_their_own():
    levels = _levels(render_kubernetes_objects(preset("enterprise")))
    assert levels == {
        ("upstream-cluster", "spire-upstream"): "restricted",
        ("upstream-cluster", "spire-upstream-agents"): "privileged",
        ("upstream-cluster", "upstream-workloads"): "restricted",
        ("downstream-cluster", "spire-downstream"): "restricted",
        ("downstream-cluster", "spire-downstream-agents"): "privileged",
        ("downstream-cluster", "downstream-workloads"): "restricted",
        # monitoring: Prometheus and Alertmanager are ordinary restricted pods
        ("upstream-cluster", "spire-monitoring"): "restricted",
        ("downstream-cluster", "spire-monitoring"): "restricted",
    }


def test_agents_get_host_pid_and_a_host_socket_dir_but_no_capabilities():
    objects = render_kubernetes_objects(preset("enterprise"))
    agents = [
        o
        for o in objects
        if o["kind"] == "DaemonSet"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "agent"
    ]
    assert len(agents) == 4
    for ds in agents:
        spec = ds["spec"]["template"]["spec"]
        assert spec["hostPID"] is True
        assert "hostNetwork" not in spec
        c = spec["containers"][0]
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        host_paths = [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v]
        assert host_paths == [f"/run/spire/agent-sockets/{ds['metadata']['name']}"]


def _restricted_pod() -> dict:
    objects = render_kubernetes_objects(preset("enterprise"))
    return copy.deepcopy(
        next(spec for _, o, spec in _pods(objects) if o["metadata"]["name"] == "enterprise-api")
    )


def _drop_everywhere(spec: dict, field: str) -> None:
    spec["securityContext"].pop(field)
    for c in spec["containers"]:
        c["securityContext"].pop(field)


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda s: s.__setitem__("hostPID", True), "hostPID"),
        (lambda s: _drop_everywhere(s, "seccompProfile"), "seccompProfile"),
        (lambda s: _drop_everywhere(s, "runAsNonRoot"), "runAsNonRoot"),
        (lambda s: s["containers"][0]["securityContext"]["capabilities"].pop("drop"), "ALL"),
        (
            lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
            "allowPrivilegeEscalation",
        ),
    ],
)
def test_the_restricted_checker_catches_each_violation(breakage, expected):
    spec = _restricted_pod()
    assert restricted_violations(spec) == []
    breakage(spec)
    assert any(expected in v for v in restricted_violations(spec))
