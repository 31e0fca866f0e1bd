"""`up` names the command that makes the project's workload image when a cluster lacks it:
before anything is written (the nodes' ``status.images``), and when a pod cannot pull it.
The node list and pods are fakes in the shape the Kubernetes client returns: no cluster
can be made to hold or lack an image on demand here."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from spire_fabric.render.kubernetes import cluster_of, render_kubernetes_objects
from spire_fabric.runtime.images import default_reference
from spire_fabric.runtime.kubernetes import KubernetesTargetError
from spire_fabric.runtime.kubernetes._preflight import _project_images_on_nodes
from spire_fabric.runtime.kubernetes._waits import _fatal_pod_problem
from spire_fabric.topology import preset

BUILD = "python -m spire_fabric.deploy image build -o spire-fabric.tar"


def node(*names: str, ready: bool = True, filler: int = 0) -> Any:
    images = [SimpleNamespace(names=list(names), size_bytes=1)] + [
        SimpleNamespace(names=[f"docker.io/library/other{i}:1"], size_bytes=1)
        for i in range(filler)
    ]
    cond = SimpleNamespace(type="Ready", status="True" if ready else "False")
    return SimpleNamespace(status=SimpleNamespace(conditions=[cond], images=images))


class FakeCluster:
    def __init__(self, nodes: list[Any] = (), pods: list[Any] = ()) -> None:  # type: ignore[assignment]
        self.core = SimpleNamespace(
            list_node=lambda: SimpleNamespace(items=list(nodes)),
            list_namespaced_pod=lambda ns, label_selector: SimpleNamespace(items=list(pods)),
        )

    def where(self) -> str:
        return "cluster downstream-cluster (context kind-x)"


def deployment(image: str) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"namespace": "w", "name": "app"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }


def test_the_enterprise_workloads_are_checked_in_the_cluster_that_runs_them() -> None:
    objs = render_kubernetes_objects(preset("enterprise"))
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for o in objs:
        by_cluster.setdefault(cluster_of(o), []).append(o)
    empty = FakeCluster([node("docker.io/library/python:3.11-slim")])
    with pytest.raises(KubernetesTargetError, match=f"image {default_reference()} is on no"):
        _project_images_on_nodes(empty, by_cluster["downstream-cluster"])  # type: ignore[arg-type]


def test_default_workload_image_on_no_node_is_refused_naming_the_build_command() -> None:
    ref = default_reference()
    cluster = FakeCluster(
        [node("docker.io/library/python:3.11-slim"), node(f"docker.io/library/{ref}", ready=False)]
    )
    with pytest.raises(KubernetesTargetError) as err:
        _project_images_on_nodes(cluster, [deployment(ref)])  # type: ignore[arg-type]
    msg = str(err.value)
    assert msg.startswith(f"image {ref} is on no node of cluster downstream-cluster")
    assert f"`{BUILD}`" in msg and "kind load image-archive spire-fabric.tar" in msg
    assert "--image workload=REF" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "reported",
    [
        "docker.io/library/spire-fabric:{v}",  # containerd's name (ctr import, kind load)
        "spire-fabric:{v}",  # however a runtime spells it, the same image
    ],
)
def test_default_workload_image_on_a_ready_node_passes(reported: str) -> None:
    ref = default_reference()
    v = ref.split(":", 1)[1]
    cluster = FakeCluster(
        [
            node("docker.io/library/python:3.11-slim"),
            node(reported.format(v=v), "docker.io/library/spire-fabric@sha256:ab"),
        ]
    )
    _project_images_on_nodes(cluster, [deployment(ref)])  # type: ignore[arg-type]


def test_another_tag_of_the_project_image_is_not_taken_for_it() -> None:
    cluster = FakeCluster([node("docker.io/library/spire-fabric:0.0.1")])
    with pytest.raises(KubernetesTargetError, match=r"--tag spire-fabric:9\.9\.9`"):
        _project_images_on_nodes(cluster, [deployment("spire-fabric:9.9.9")])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "image",
    [
        "registry.example/team/spire-fabric:1",  # a registry serves it: the kubelet pulls
        "python:3.11-slim",  # not ours: Docker Hub serves it
    ],
)
def test_images_a_registry_serves_are_not_looked_for(image: str) -> None:
    _project_images_on_nodes(FakeCluster([node()]), [deployment(image)])  # type: ignore[arg-type]


def test_a_node_reporting_the_kubelets_maximum_is_no_proof_of_absence() -> None:
    cluster = FakeCluster([node("docker.io/library/python:3.11-slim", filler=49)])
    _project_images_on_nodes(cluster, [deployment(default_reference())])  # type: ignore[arg-type]


def pod(image: str, reason: str) -> Any:
    waiting = SimpleNamespace(reason=reason, message=f'Back-off pulling image "{image}"')
    cs = SimpleNamespace(name="app", image=image, state=SimpleNamespace(waiting=waiting))
    return SimpleNamespace(
        metadata=SimpleNamespace(name="app-1"),
        status=SimpleNamespace(container_statuses=[cs], init_container_statuses=None),
    )


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"])
def test_a_pod_that_cannot_pull_the_project_image_names_the_build_command(reason: str) -> None:
    ref = default_reference()
    problem = _fatal_pod_problem(FakeCluster(pods=[pod(ref, reason)]), deployment(ref))  # type: ignore[arg-type]
    assert problem is not None and problem.startswith(f"pod app-1 container app ({ref}): {reason}")
    assert f"`{BUILD}`" in problem and "--image workload=REF" in problem


def test_a_pod_that_cannot_pull_another_image_gets_no_build_hint() -> None:
    problem = _fatal_pod_problem(
        FakeCluster(pods=[pod("nginx:1.27", "ImagePullBackOff")]),  # type: ignore[arg-type]
        deployment("nginx:1.27"),
    )
    assert problem is not None and "ImagePullBackOff" in problem and "image build" not in problem
