"""The Kubernetes target's pure parts: context choice, the plan's field diff, rollout
readiness as the API reports it, the permission names it asks about."""

from __future__ import annotations

from pathlib import Path

import pytest

from spire_fabric.runtime.kubernetes import KubernetesTargetError
from spire_fabric.runtime.kubernetes._clusters import resolve_contexts
from spire_fabric.runtime.kubernetes._objects import changed_fields
from spire_fabric.runtime.kubernetes._preflight import _plural
from spire_fabric.runtime.kubernetes._waits import rollout_done
from spire_fabric.topology import preset


def _kubeconfig(tmp_path: Path, *contexts: str, current: str | None = None) -> str:
    path = tmp_path / "kubeconfig"
    ctx = ", ".join(f"{{name: {c}, context: {{cluster: c, user: u}}}}" for c in contexts)
    path.write_text(
        f"apiVersion: v1\nkind: Config\ncurrent-context: {current or contexts[0]}\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        f"contexts: [{ctx}]\n"
    )
    return str(path)


def test_enterprise_defaults_to_the_source_designs_contexts(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path, "upstream-spire-cluster", "downstream-spire-cluster")
    assert resolve_contexts(preset("enterprise"), kc, {}) == {
        "upstream-cluster": "upstream-spire-cluster",
        "downstream-cluster": "downstream-spire-cluster",
    }


def test_a_one_cluster_topology_uses_the_current_context(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path, "a", "b", current="b")
    assert resolve_contexts(preset("basic"), kc, {}) == {"spire-cluster": "b"}
    assert resolve_contexts(preset("basic"), kc, {"spire-cluster": "a"}) == {"spire-cluster": "a"}


def test_an_unknown_context_is_named_with_those_that_exist(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path, "a", "b")
    with pytest.raises(KubernetesTargetError, match=r"unknown context 'nope' for cluster "
                       r"spire-cluster \(--context spire-cluster=nope\).* has a, b"):
        resolve_contexts(preset("basic"), kc, {"spire-cluster": "nope"})


def test_a_context_for_a_cluster_the_topology_lacks_is_refused(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path, "a")
    with pytest.raises(KubernetesTargetError, match="has no cluster of that name"):
        resolve_contexts(preset("basic"), kc, {"upstream-cluster": "a"})


def test_changed_fields_ignore_what_the_server_owns() -> None:
    live = {"kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "1",
            "managedFields": [1], "uid": "u"}, "data": {"a": "1"}, "status": {"x": 1}}  # fmt: skip
    same = {"kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "2"},
            "data": {"a": "1"}}  # fmt: skip
    assert changed_fields(live, same) == []
    other = {**same, "data": {"a": "2"}}
    assert changed_fields(live, other) == ["data.a"]


def test_changed_fields_stop_at_a_readable_depth() -> None:
    a = {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}
    b = {"spec": {"template": {"spec": {"containers": [{"image": "y"}]}}}}
    assert changed_fields(a, b) == ["spec.template.spec"]


@pytest.mark.parametrize(
    ("obj", "done"),
    [
        ({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 2, "replicas": 1, "readyReplicas": 1,
                     "updatedReplicas": 1, "availableReplicas": 1}}, True),
        ({"kind": "Deployment", "metadata": {"generation": 3}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 2, "replicas": 1, "readyReplicas": 1,
                     "updatedReplicas": 1, "availableReplicas": 1}}, False),
        ({"kind": "DaemonSet", "metadata": {"generation": 1}, "status": {
            "observedGeneration": 1, "desiredNumberScheduled": 0}}, False),
        ({"kind": "DaemonSet", "metadata": {"generation": 1}, "status": {
            "observedGeneration": 1, "desiredNumberScheduled": 1, "numberReady": 1,
            "updatedNumberScheduled": 1}}, True),
        ({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1,
                     "currentRevision": "a", "updateRevision": "b"}}, False),
    ],
)  # fmt: skip
def test_rollout_done_reads_the_controllers_status(obj: dict, done: bool) -> None:
    assert rollout_done(obj)[0] is done


def test_a_daemonset_no_node_can_run_says_so() -> None:
    obj = {"kind": "DaemonSet", "metadata": {"generation": 1},
           "status": {"observedGeneration": 1, "desiredNumberScheduled": 0}}  # fmt: skip
    assert rollout_done(obj)[1] == "no node matches its node selector"


def test_plural_names_of_the_kinds_we_apply() -> None:
    assert _plural("ClusterStaticEntry") == "clusterstaticentries"
    assert _plural("ClusterSPIFFEID") == "clusterspiffeids"
    assert _plural("PersistentVolumeClaim") == "persistentvolumeclaims"
    assert _plural("CustomResourceDefinition") == "customresourcedefinitions"


def test_exec_and_port_forward_never_swap_the_shared_api_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client's `stream` swaps `call_api` on the ApiClient it is handed; on the shared
    one a concurrent list went out as a websocket ("Handshake status 200 OK" in a run)."""
    from kubernetes import client as k8s

    from spire_fabric.runtime.kubernetes import _pods
    from spire_fabric.runtime.kubernetes._clusters import ClusterApi

    conn = ClusterApi("c", "ctx", k8s.ApiClient(k8s.Configuration()))
    handed: list[object] = []

    class Refused(Exception):
        pass

    def fake_stream(method: object, *args: object, **kwargs: object) -> object:
        handed.append(method.__self__.api_client)  # type: ignore[attr-defined]
        raise Refused

    monkeypatch.setattr(_pods, "stream", fake_stream)
    monkeypatch.setattr(_pods, "portforward", fake_stream)
    monkeypatch.setattr(_pods.PortForward, "RETRY_PAUSE", 0.01)
    with pytest.raises(Refused):
        _pods.exec_in_pod(conn, "ns", "pod", "c", ["true"])
    pf = _pods.PortForward(conn, "ns", "pod", 80)
    try:
        import socket

        with socket.create_connection(("127.0.0.1", pf.local_port)) as s:
            s.settimeout(5)
            assert s.recv(1) == b""  # the forward failed and closed this connection
    finally:
        pf.close()
    assert len(handed) == 1 + _pods.PortForward.OPEN_ATTEMPTS  # exec, then each try
    assert all(api is not conn.api for api in handed)


def test_a_stage_is_applied_in_waves_namespaces_first_then_what_pods_use_then_pods():
    """Each wave at once (a stage of 40 objects took 2.5-3.7 s one after the other), but
    never a pod-making object before the ConfigMaps, claims and Services its pods use."""
    from spire_fabric.runtime.kubernetes._installer import _apply_waves

    def o(kind: str, name: str) -> tuple[str, dict]:
        return ("c", {"kind": kind, "metadata": {"name": name}})

    batch = [o("Namespace", "a"), o("NetworkPolicy", "p"), o("Namespace", "b"),
             o("ConfigMap", "cm"), o("Deployment", "d"), o("PersistentVolumeClaim", "v"),
             o("StatefulSet", "s"), o("Service", "svc")]  # fmt: skip
    waves = [[x[1]["metadata"]["name"] for x in w] for w in _apply_waves(batch)]
    assert waves == [["a"], ["b"], ["p", "cm", "v", "svc"], ["d", "s"]]
    assert _apply_waves([o("Deployment", "d")]) == [[o("Deployment", "d")]]
    assert _apply_waves([]) == []
