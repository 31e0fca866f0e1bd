"""`up` refuses, before it writes anything, to grant its agents ``nodes/pods`` only where a
kubelet would not honour it: one older than 1.33, or a newer one whose /metrics report the
KubeletFineGrainedAuthz gate off. The refusal names the setting that grants nodes/proxy.
Node lists and kubelet metrics are fakes in the client's shape: no cluster here runs an old
kubelet (the real clusters' 1.37 kubelets are the cluster tests' business)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from spire_fabric.render.kubernetes import cluster_of, render_kubernetes_objects
from spire_fabric.runtime.kubernetes import KubernetesTargetError
from spire_fabric.runtime.kubernetes._preflight import _kubelets_know_nodes_pods, kubelet_version
from spire_fabric.topology import Topology, preset, validate_topology

GATE = 'kubernetes_feature_enabled{name="KubeletFineGrainedAuthz",stage="BETA"}'


class FakeCluster:
    def __init__(self, versions: dict[str, str], metrics: dict[str, str] | None = None) -> None:
        self.metrics_asked: list[str] = []

        def metrics_of(node: str, path: str) -> str:
            assert path == "metrics"
            self.metrics_asked.append(node)
            if metrics is None:
                raise ApiException(status=403, reason="Forbidden")
            return metrics.get(node, "")

        nodes = [
            SimpleNamespace(metadata=SimpleNamespace(name=n),
                            status=SimpleNamespace(node_info=SimpleNamespace(kubelet_version=v)))
            for n, v in versions.items()
        ]  # fmt: skip
        self.core = SimpleNamespace(
            list_node=lambda: SimpleNamespace(items=nodes),
            connect_get_node_proxy_with_path=metrics_of,
        )

    def where(self) -> str:
        return "cluster downstream-cluster (context kind-x)"


def downstream(t: Topology) -> list[dict[str, Any]]:
    return [o for o in render_kubernetes_objects(t) if cluster_of(o) == "downstream-cluster"]


def all_proxy(t: Topology) -> Topology:
    agents = tuple(
        dataclasses.replace(a, kubernetes=dataclasses.replace(a.kubernetes,
                                                              kubelet_access="nodes/proxy"))
        if a.kubernetes is not None else a
        for a in t.agents
    )  # fmt: skip
    return validate_topology(dataclasses.replace(t, agents=agents))


def test_a_132_kubelet_is_refused_naming_every_agent_setting_to_change() -> None:
    cluster = FakeCluster({"node-a": "v1.33.0", "node-b": "v1.32.4"}, metrics={})
    with pytest.raises(KubernetesTargetError) as err:
        _kubelets_know_nodes_pods(cluster, downstream(preset("enterprise")))  # type: ignore[arg-type]
    msg = str(err.value)
    assert msg.startswith("node node-b of cluster downstream-cluster (context kind-x) runs "
                          "kubelet v1.32.4, older than 1.33: ")  # fmt: skip
    for n in (1, 2, 3):
        assert f"agents[downstream-agent-{n}].kubernetes.kubelet_access" in msg
    assert "upstream-agent" not in msg and "to nodes/proxy" in msg


def test_a_newer_kubelet_with_the_gate_off_in_its_metrics_is_refused() -> None:
    cluster = FakeCluster({"node-a": "v1.34.2"}, metrics={"node-a": f"x 1\n{GATE} 0\n"})
    with pytest.raises(KubernetesTargetError, match="with the KubeletFineGrainedAuthz feature "
                       "gate off: it authorizes"):  # fmt: skip
        _kubelets_know_nodes_pods(cluster, downstream(preset("enterprise")))  # type: ignore[arg-type]


@pytest.mark.parametrize("metrics", [None, {"node-a": f"{GATE} 1\n"}, {}])
def test_a_133_kubelet_passes_whether_or_not_its_metrics_can_be_read(
    metrics: dict[str, str] | None,
) -> None:
    cluster = FakeCluster({"node-a": "v1.33.1-eks-1", "node-b": "v1.37.2"}, metrics=metrics)
    _kubelets_know_nodes_pods(cluster, downstream(preset("enterprise")))  # type: ignore[arg-type]
    assert cluster.metrics_asked == ["node-a", "node-b"]


def test_agents_that_opted_into_nodes_proxy_need_no_new_kubelet() -> None:
    cluster = FakeCluster({"node-a": "v1.29.0"}, metrics={})
    _kubelets_know_nodes_pods(cluster, downstream(all_proxy(preset("enterprise"))))  # type: ignore[arg-type]
    assert cluster.metrics_asked == []


@pytest.mark.parametrize(
    ("text", "version"),
    [("v1.32.4", (1, 32)), ("v1.33.1-eks-1", (1, 33)), ("1.40.0", (1, 40)), ("", None),
     ("vX.Y", None)],
)  # fmt: skip
def test_kubelet_version(text: str, version: tuple[int, int] | None) -> None:
    assert kubelet_version(text) == version
