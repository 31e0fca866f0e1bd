"""The project image's OCI layout and names, without pip or a container runtime: the
archive is an image layout whose digests all match, our layer holds the site directory and
the `python` name, and a base archive is read and extended as an image tool would."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from spire_fabric.runtime.images import (
    ImageBuildError,
    _debian,
    default_reference,
    is_project_image,
    missing_image_hint,
)
from spire_fabric.runtime.images._base import find_python, read_archive
from spire_fabric.runtime.images._oci import (
    files_layer,
    image_config,
    normalized,
    parse_reference,
    registry_host,
    tar_layer,
    write_image,
)
from spire_fabric.runtime.images._project import SITE, WHEEL_INPUTS, project_layer, repack
from spire_fabric.topology import Images


def read_layout(archive: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                         list[bytes]]:  # fmt: skip
    """(index descriptor, manifest, config, layer blobs), every digest and size checked."""
    with tarfile.open(archive) as tar:

        def blob(desc: dict[str, Any]) -> bytes:
            fh = tar.extractfile("blobs/sha256/" + desc["digest"].split(":", 1)[1])
            assert fh is not None
            data = fh.read()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
            assert len(data) == desc["size"]
            return data

        layout = tar.extractfile("oci-layout")
        assert layout is not None
        assert json.loads(layout.read()) == {"imageLayoutVersion": "1.0.0"}
        index_fh = tar.extractfile("index.json")
        assert index_fh is not None
        (desc,) = json.loads(index_fh.read())["manifests"]
        manifest = json.loads(blob(desc))
        config = json.loads(blob(manifest["config"]))
        layers = [blob(d) for d in manifest["layers"]]
    return desc, manifest, config, layers


def uncompressed(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def names_in(layer: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(uncompressed(layer))) as t:
        return {m.name: m for m in t.getmembers()}


def fake_site(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    pkg = root / SITE.lstrip("/") / "spire_fabric"
    (pkg / "examples").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = 'x'\n")
    (pkg / "examples" / "__init__.py").write_text("")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "x.pyc").write_bytes(b"stale")
    return root


def base_archive(tmp_path: Path, files: dict[str, bytes], *, gz: bool = True,
                 history: bool = True) -> Path:  # fmt: skip
    """A one-layer image as skopeo writes it: a gzip layer, a config with PATH and Cmd."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            t.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    stored = gzip.compress(raw.getvalue(), mtime=0) if gz else raw.getvalue()
    layer_desc = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else ""),
        "digest": "sha256:" + hashlib.sha256(stored).hexdigest(),
        "size": len(stored),
    }
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"],
                         "Cmd": ["python3"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}  # fmt: skip
    if history:
        config["history"] = [{"created_by": "base"}]
    cfg = json.dumps(config).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(cfg).hexdigest(), "size": len(cfg)},
        "layers": [layer_desc]}).encode()  # fmt: skip
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
                    "size": len(manifest),
                }
            ],
        }
    )
    out = tmp_path / "base.tar"
    with tarfile.open(out, "w") as t:
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", index.encode()),
                           ("blobs/sha256/" + hashlib.sha256(cfg).hexdigest(), cfg),
                           ("blobs/sha256/" + hashlib.sha256(manifest).hexdigest(), manifest),
                           ("blobs/sha256/" + layer_desc["digest"][7:], stored)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out


def test_project_layer_on_a_base_is_a_consistent_image_layout(tmp_path: Path) -> None:
    base = read_archive(base_archive(tmp_path, {"usr/bin/python3.11": b"#!/bin/false\n"}),
                        tmp_path / "work")  # fmt: skip
    python = find_python(base)
    assert (python.minor, python.path, python.has_python_name) == (11, "/usr/bin/python3.11",
                                                                   False)  # fmt: skip
    ours = tar_layer(project_layer(tmp_path / "p.tar", fake_site(tmp_path), python.path))
    layers = [*base.layers, ours]
    config = image_config(layers, base=base.config, cmd=["python"], entrypoint=(),
                          env=[f"PYTHONPATH={SITE}"])  # fmt: skip
    out = tmp_path / "image.tar"
    write_image(out, "spire-fabric:9.9.9", layers, config)

    desc, manifest, config, blobs = read_layout(out)
    assert desc["annotations"]["io.containerd.image.name"] == "docker.io/library/spire-fabric:9.9.9"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == (
        "docker.io/library/spire-fabric:9.9.9"
    )
    # the base's layer is copied as stored (gzip), ours is an uncompressed tar
    assert manifest["layers"][0]["mediaType"].endswith("+gzip")
    assert manifest["layers"][1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert config["rootfs"]["diff_ids"] == [
        "sha256:" + hashlib.sha256(uncompressed(b)).hexdigest() for b in blobs
    ]
    assert len(config["history"]) == 2  # one per layer, as docker load counts them
    env = config["config"]["Env"]
    assert f"PYTHONPATH={SITE}" in env and "LANG=C.UTF-8" in env
    assert "PATH=/usr/local/bin:/usr/bin" in env  # the base's PATH is kept
    assert config["config"]["Cmd"] == ["python"] and not config["config"].get("Entrypoint")
    members = names_in(blobs[1])
    init = members[f"{SITE.lstrip('/')}/spire_fabric/__init__.py"]
    assert init.mtime == 1_700_000_000 and init.uid == 0 and init.mode == 0o644
    assert f"{SITE.lstrip('/')}/spire_fabric/examples/__init__.py" in members
    assert not any("__pycache__" in n for n in members)
    link = members["usr/local/bin/python"]
    assert link.issym() and link.linkname == "/usr/bin/python3.11"


def test_no_python_symlink_over_a_base_that_has_python(tmp_path: Path) -> None:
    base = read_archive(base_archive(tmp_path, {"usr/local/bin/python3.12": b"",
                                                "usr/local/bin/python": b""}),
                        tmp_path / "work")  # fmt: skip
    python = find_python(base)
    assert (python.minor, python.has_python_name) == (12, True)
    layer = project_layer(tmp_path / "p.tar", fake_site(tmp_path), None)
    assert "usr/local/bin/python" not in names_in(layer.read_bytes())


def test_same_site_gives_the_same_layer_digest(tmp_path: Path) -> None:
    site = fake_site(tmp_path)
    a = tar_layer(project_layer(tmp_path / "a.tar", site, "/usr/bin/python3"))
    (site / "x").touch()
    (site / "x").unlink()  # a changed directory mtime must not change the digest
    b = tar_layer(project_layer(tmp_path / "b.tar", site, "/usr/bin/python3"))
    assert a.digest == b.digest
    src = tmp_path / "f"
    src.write_text("x")
    assert (tar_layer(files_layer([("a/f", src)], tmp_path / "1.tar")).digest
            == tar_layer(files_layer([("a/f", src)], tmp_path / "2.tar")).digest)  # fmt: skip


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"etc/hostname": b"x"}, "has no python3"),
        ({"usr/bin/python3.9": b""}, "has Python 3.9; spire_fabric needs 3.10+"),
    ],
)
def test_a_base_without_a_usable_python_is_refused(
    tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    base = read_archive(base_archive(tmp_path, files), tmp_path / "work")
    with pytest.raises(ImageBuildError, match=message):
        find_python(base)


def test_a_docker_archive_base_is_refused_with_the_conversion(tmp_path: Path) -> None:
    archive = tmp_path / "docker.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        t.addfile(info, io.BytesIO(b"[]"))
    with pytest.raises(ImageBuildError, match=r"docker-archive, not an OCI archive: .*skopeo copy "
                       r"docker-archive:"):  # fmt: skip
        read_archive(archive, tmp_path / "work")


def test_a_corrupt_base_blob_is_refused(tmp_path: Path) -> None:
    good = base_archive(tmp_path, {"usr/bin/python3.11": b""}, gz=False)
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            fh = src.extractfile(m)
            assert fh is not None
            data = fh.read()
            if m.name.startswith("blobs/") and b"python3.11" in data:
                data = data.replace(b"python3.11", b"python3.12")
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(ImageBuildError, match="is corrupt"):
        read_archive(bad, tmp_path / "work")


def test_reference_names_as_the_kubelet_and_containerd_see_them() -> None:
    assert normalized("spire-fabric:0.1.0") == "docker.io/library/spire-fabric:0.1.0"
    assert normalized("me/spire-fabric:1") == "docker.io/me/spire-fabric:1"
    assert normalized("localhost:5000/spire-fabric:1") == "localhost:5000/spire-fabric:1"
    assert registry_host("spire-fabric:1") is None
    assert registry_host("spire-fabric.local/spire-fabric-python:1") == "spire-fabric.local"
    assert parse_reference("spire-fabric") is None  # a tag is required
    assert parse_reference("Spire:1") is None
    assert parse_reference("reg.example:5000/a/b:1.0") == ("reg.example:5000/a/b", "1.0")


def test_the_default_workload_image_is_what_image_build_makes() -> None:
    assert Images().workload == default_reference()
    assert is_project_image(Images().workload)
    assert is_project_image("registry.example/team/spire-fabric:1@sha256:" + "0" * 64)
    assert not is_project_image("python:3.11-slim")
    assert not is_project_image("spire-fabric.local/spire-fabric-python:1")
    assert "image build -o spire-fabric.tar`" in missing_image_hint(default_reference())
    assert "--tag spire-fabric:custom`" in missing_image_hint("spire-fabric:custom")


def test_the_containerfile_makes_the_same_image_shape() -> None:
    """The Containerfile's site directory, environment and command are the archive's."""
    text = (Path(__file__).resolve().parents[2] / "Containerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert f"--target {SITE}" in text
    assert f"ENV PYTHONPATH={SITE}" in text
    assert 'CMD ["python"]' in text
    copied = {w for line in text.splitlines() if line.startswith("COPY ") and "--from" not in line
              for w in line.split()[1:-1]}  # fmt: skip
    assert copied == set(WHEEL_INPUTS)  # built from the same files as `image build`


def test_an_installed_distribution_is_repacked_into_a_wheel_pip_installs(tmp_path: Path) -> None:
    """Not editable (installed from a wheel or an index): the image gets exactly the
    installed files, through a wheel pip itself accepts."""
    site = tmp_path / "site"
    info = site / "spire_fabric-9.9.9.dist-info"
    (site / "spire_fabric").mkdir(parents=True)
    (site / "spire_fabric" / "__init__.py").write_text("__version__ = '9.9.9'\n")
    (site / "spire_fabric" / "__pycache__").mkdir()
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spire-fabric\nVersion: 9.9.9\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "direct_url.json").write_text('{"url": "file:///somewhere"}')
    (info / "RECORD").write_text(
        "spire_fabric/__init__.py,,\nspire_fabric/__pycache__/x.pyc,,\n"
        "spire_fabric-9.9.9.dist-info/METADATA,,\nspire_fabric-9.9.9.dist-info/WHEEL,,\n"
        "spire_fabric-9.9.9.dist-info/INSTALLER,,\n"
        "spire_fabric-9.9.9.dist-info/direct_url.json,,\n"
        "spire_fabric-9.9.9.dist-info/RECORD,,\n../../../bin/spire-fabric,,\n"
    )
    wheel = repack(metadata.PathDistribution(info), tmp_path / "w")
    assert wheel.name == "spire_fabric-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        assert sorted(zf.namelist()) == [
            "spire_fabric-9.9.9.dist-info/METADATA",
            "spire_fabric-9.9.9.dist-info/RECORD",
            "spire_fabric-9.9.9.dist-info/WHEEL",
            "spire_fabric/__init__.py",
        ]
    target = tmp_path / "target"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--no-compile", "--target", str(target), str(wheel)],
        check=True, capture_output=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert (target / "spire_fabric" / "__init__.py").read_text() == "__version__ = '9.9.9'\n"


@pytest.mark.parametrize(
    ("root", "debootstrap", "message"),
    [
        (False, True, r"must be built as root once; or pass --base OCI-ARCHIVE"),
        (True, False, r"needs debootstrap: apt-get install debootstrap; or pass --base"),
    ],
)
def test_a_missing_prerequisite_of_the_default_base_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: bool, debootstrap: bool, message: str
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no cached base layer
    monkeypatch.setattr(_debian.os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(_debian.shutil, "which", lambda name: "/x" if debootstrap else None)
    with pytest.raises(ImageBuildError, match=message) as err:
        _debian.ensure_base_layer(say=lambda _: None)
    assert "skopeo copy docker://python:3.11-slim oci-archive:base.tar" in str(err.value)
    assert not any(tmp_path.rglob("*.tar"))
