"""The pure parts of the Kubernetes test-cluster harness (no root, no clusters)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import tarfile
from pathlib import Path

import kubernetes_validate
import pytest

from spire_fabric.testing.kubernetes import _build, _cluster, _images


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    fh = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
    assert fh is not None
    return fh.read()


def test_oci_image_tarball_is_a_consistent_image_layout(tmp_path: Path) -> None:
    exe = tmp_path / "hello"
    exe.write_bytes(b"#!/bin/sh\necho hi\n")
    exe.chmod(0o755)
    layer = _images._files_layer([("usr/local/bin/hello", exe)], tmp_path / "layer.tar")
    out = tmp_path / "image.oci.tar"
    ref = "spire-fabric.local/hello:1.2.3"
    _images.write_oci_image(out, ref, [layer], ["/usr/local/bin/hello"], ["A=b"])
    with tarfile.open(out) as tar:
        assert json.loads(tar.extractfile("oci-layout").read()) == {  # type: ignore[union-attr]
            "imageLayoutVersion": "1.0.0"}
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        (desc,) = index["manifests"]
        assert desc["annotations"]["io.containerd.image.name"] == ref
        manifest_bytes = _blob(tar, desc["digest"])
        assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == desc["digest"]
        manifest = json.loads(manifest_bytes)
        config = json.loads(_blob(tar, manifest["config"]["digest"]))
        (layer_desc,) = manifest["layers"]
        layer_bytes = _blob(tar, layer_desc["digest"])
        assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
        assert config["config"]["Entrypoint"] == ["/usr/local/bin/hello"]
        assert "A=b" in config["config"]["Env"]
    (tmp_path / "l.tar").write_bytes(layer_bytes)
    with tarfile.open(tmp_path / "l.tar") as lt:
        info = lt.getmember("usr/local/bin/hello")
        assert info.mode == 0o755 and info.uid == 0


def test_same_inputs_give_the_same_layer_digest(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    a = _images._files_layer([("a/f", src)], tmp_path / "a.tar")
    b = _images._files_layer([("a/f", src)], tmp_path / "b.tar")
    assert _images._sha256(a) == _images._sha256(b)


def test_staging_modules_come_from_the_kubernetes_replace_block(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text(
        "module k8s.io/kubernetes\n\ngo 1.26.0\n\nreplace (\n"
        "\tk8s.io/api => ./staging/src/k8s.io/api\n"
        "\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n)\n"
        "replace example.com/x => example.com/x v1.0.0\n")
    assert _build._staging_replaces(tmp_path) == ["k8s.io/api", "k8s.io/client-go"]
    assert _build._go_directive(tmp_path / "go.mod") == "1.26.0"


def test_each_version_has_its_own_cache_directory() -> None:
    kube = _build.PARTS["kubernetes"]
    assert kube.cache_dir.name == f"kubernetes-{_build.KUBERNETES_VERSION}"
    assert _build.PARTS["etcd"].cache_dir.name == f"etcd-{_build.ETCD_VERSION}"


def test_clusters_use_disjoint_private_ranges_named_as_in_the_design() -> None:
    up, down = _cluster.CLUSTERS
    assert (up.name, down.name) == ("upstream-spire-cluster", "downstream-spire-cluster")
    nets = [ipaddress.ip_network(c) for s in (up, down)
            for c in (s.link_cidr, s.pod_cidr, s.service_cidr)]
    for i, a in enumerate(nets):
        assert a.is_private
        for b in nets[i + 1:]:
            assert not a.overlaps(b)
    fence = ipaddress.ip_network(_cluster.OUTSIDE_RANGE)
    services = ipaddress.ip_network(_cluster.SERVICE_RANGE)
    for s in (up, down):
        assert ipaddress.ip_network(s.pod_cidr).subnet_of(fence)  # type: ignore[arg-type]
        assert ipaddress.ip_network(s.service_cidr).subnet_of(services)  # type: ignore[arg-type]
        assert ipaddress.ip_address(s.dns_ip) in ipaddress.ip_network(s.service_cidr)
        # below the 30000-60000 loopback ports other tests on the machine use
        assert all(s.port(o) < 30000 for o in (57, 59, 79, 80))


@pytest.mark.parametrize("spec", _cluster.CLUSTERS, ids=lambda s: s.name)
def test_bootstrap_objects_pass_schema_validation(spec: _cluster.ClusterSpec,
                                                  tmp_path: Path) -> None:
    docs = _cluster._bootstrap_manifests(spec, tmp_path)
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    dns = next(d for d in docs if d["kind"] == "Service")
    assert dns["spec"]["clusterIP"] == spec.dns_ip
    pvs = [d for d in docs if d["kind"] == "PersistentVolume"]
    assert len(pvs) == _cluster.PV_COUNT
    assert all(str(tmp_path) in pv["spec"]["hostPath"]["path"] for pv in pvs)
