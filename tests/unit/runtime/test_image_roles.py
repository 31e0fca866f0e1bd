"""``deploy --image ROLE=REF`` reaches every image the agents' DaemonSets run (the CSI
driver, its registrar and the agent's init container included), by tag or by digest."""

from __future__ import annotations

import pytest

from spire_fabric.render.kubernetes import render_kubernetes_objects
from spire_fabric.runtime.kubernetes import KubernetesTargetError
from spire_fabric.runtime.kubernetes._adapt import IMAGE_ROLES, adapt
from spire_fabric.runtime.kubernetes._state import KubernetesSettings
from spire_fabric.topology import preset

DIGEST = "sha256:" + "ab" * 32


def images_of(objects: list[dict[str, object]]) -> set[str]:
    out = set()
    for o in objects:
        spec = o.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}  # type: ignore[union-attr]
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            out.add(c["image"])
    return out


def test_the_roles_are_every_image_field_and_mysql() -> None:
    assert IMAGE_ROLES == ("server", "agent", "controller_manager", "workload", "ghostunnel",
                           "nginx", "csi_driver", "csi_registrar", "agent_init", "prometheus",
                           "alertmanager", "mysql")  # fmt: skip


def test_csi_and_init_images_are_overridden_by_digest() -> None:
    refs = {
        "csi_driver": f"registry.example/spiffe-csi-driver@{DIGEST}",
        "csi_registrar": f"registry.example/csi-node-driver-registrar:v2.10.0@{DIGEST}",
        "agent_init": f"registry.example/busybox@{DIGEST}",
    }
    t = adapt(preset("enterprise"), {}, KubernetesSettings(images=refs))
    images = images_of(render_kubernetes_objects(t))
    assert set(refs.values()) <= images
    default = preset("enterprise").kubernetes.images
    assert not {default.csi_driver, default.csi_registrar, default.agent_init} & images


def test_monitoring_images_are_overridden_like_the_others() -> None:
    refs = {"prometheus": "registry.example/prometheus:2.42.0",
            "alertmanager": "registry.example/alertmanager:0.25.0"}  # fmt: skip
    t = adapt(preset("enterprise"), {}, KubernetesSettings(images=refs))
    assert set(refs.values()) <= images_of(render_kubernetes_objects(t))


def test_an_unknown_role_is_refused_listing_the_roles() -> None:
    with pytest.raises(KubernetesTargetError, match=r"--image csi=…: unknown role \(one of "
                       r"server, agent, controller_manager, workload, ghostunnel, nginx, "
                       r"csi_driver, "
                       r"csi_registrar, "
                       r"agent_init, prometheus, alertmanager, mysql\)"):  # fmt: skip
        adapt(preset("enterprise"), {}, KubernetesSettings(images={"csi": "x:1"}))


def test_the_cli_refuses_a_misspelt_role_before_it_contacts_any_cluster(tmp_path) -> None:
    """No kubeconfig anywhere: the answer is still about the role, exit 2 (`up`; `plan` keeps
    2 for "changes", as terraform does, and exits 1)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, KUBECONFIG=str(tmp_path / "none"), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "spire_fabric.deploy", "up", "--target", "kubernetes",
         "--image", "promethus=x:1"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--image promethus=…: unknown role (one of server, agent," in proc.stderr
    assert "kubeconfig" not in proc.stderr


def test_sidecar_images_are_overridden_like_the_others(monkeypatch) -> None:
    """With sidecars on Kubernetes, `--image ghostunnel=` and `--image nginx=` reach the
    sidecar containers and the nginx apps (inventory, catalog)."""
    from spire_fabric.topology._kubernetes_only import SIDECARS_ENV

    monkeypatch.setenv(SIDECARS_ENV, "1")
    refs = {"ghostunnel": "registry.example/ghostunnel:1.8.4",
            "nginx": "registry.example/spire-fabric-nginx:0.1.0"}  # fmt: skip
    t = adapt(preset("enterprise"), {}, KubernetesSettings(images=refs))
    assert set(refs.values()) <= images_of(render_kubernetes_objects(t))
