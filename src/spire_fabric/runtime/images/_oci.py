"""OCI image-layout tarballs written with `tarfile`: what `ctr images import`,
`kind load image-archive`, `skopeo copy oci-archive:…`, `podman load` and `docker load`
(25+) all read.

An image is an `oci-layout`, an `index.json` with one manifest, a config and the layers.
Our own layers are uncompressed tars with every mtime and owner fixed, so the same inputs
give the same digests (containerd then stores a shared layer once); a base image's layers
are copied as they are (gzip and all), with their descriptors.

The manifest's descriptor in `index.json` carries the image's name twice: containerd reads
`io.containerd.image.name` (as is, so it must be the normalised name the kubelet asks for:
`docker.io/library/spire-fabric:0.1.0`), the containers tools read
`org.opencontainers.image.ref.name` (a bare tag there would name the image `latest`-like).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
EPOCH = 1_700_000_000  # fixed mtime: the same inputs give the same layer digest
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The distribution spec's grammar, reduced to what a name we write may be.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"
)


def parse_reference(ref: str) -> tuple[str, str] | None:
    """(name, tag) of ``name:tag``, or None when it is not one (a digest, no tag, bad chars)."""
    m = _REFERENCE.match(ref)
    return (m.group("name"), m.group("tag")) if m else None


def registry_host(ref: str) -> str | None:
    """The registry host a reference names, or None for a bare Docker Hub name
    (``spire-fabric:1``, ``library/python:3.11``): the first component counts as a host
    only with a dot, a port or as ``localhost``, as Docker and the kubelet decide."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def normalized(ref: str) -> str:
    """The fully qualified name the kubelet and containerd use for ``ref``."""
    if registry_host(ref) is not None:
        return ref
    return ("docker.io/" if "/" in ref else "docker.io/library/") + ref


@dataclass(frozen=True)
class Layer:
    """A layer blob on disk with its manifest descriptor and its uncompressed digest."""

    path: Path
    media_type: str
    digest: str  # sha256:… of the blob as stored
    size: int
    diff_id: str  # sha256:… of the uncompressed tar (the config's rootfs.diff_ids)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tar_layer(path: Path) -> Layer:
    """One of our uncompressed tar layers: its blob digest is its diff ID."""
    digest = "sha256:" + sha256_file(path)
    return Layer(path, LAYER_TYPE, digest, path.stat().st_size, digest)


def fixed(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A tar entry made reproducible: fixed mtime, root owner, modes from the exec bit."""
    info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
    if info.isdir() or info.issym():
        info.mode = 0o755 if info.isdir() else 0o777
    else:
        info.mode = 0o755 if info.mode & 0o111 else 0o644
    return info


def files_layer(files: Sequence[tuple[str, Path]], out: Path) -> Path:
    """A layer of single files (path in the image, file on the host), parents made 0755."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for inside, src in files:
            parts = inside.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                    tar.addfile(info)
            info = fixed(tar.gettarinfo(str(src), arcname="/".join(parts)))
            info.mode = 0o755 if os.access(src, os.X_OK) else 0o644
            with open(src, "rb") as fh:
                tar.addfile(info, fh)
    return out


def image_config(
    layers: Sequence[Layer],
    *,
    base: dict[str, Any] | None = None,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Sequence[str] = (),
) -> dict[str, Any]:
    """The image config: the base's (architecture, PATH, history…) with our layers' diff
    IDs, our environment set over the base's, and the entry we give (None keeps the base's)."""
    config: dict[str, Any] = json.loads(json.dumps(base)) if base else {
        "architecture": "amd64", "os": "linux", "config": {}}  # fmt: skip
    inner = config.setdefault("config", {}) or {}
    config["config"] = inner
    merged = {e.split("=", 1)[0]: e for e in inner.get("Env") or [DEFAULT_PATH]}
    merged.update({e.split("=", 1)[0]: e for e in env})
    inner["Env"] = list(merged.values())
    if entrypoint is not None:
        inner["Entrypoint"] = list(entrypoint) or None
    if cmd is not None:
        inner["Cmd"] = list(cmd) or None
    inner.setdefault("WorkingDir", "/")
    if not inner["WorkingDir"]:
        inner["WorkingDir"] = "/"
    diff_ids = [layer.diff_id for layer in layers]
    if "history" in config:
        # Docker counts the non-empty history entries against the layers.
        added = len(diff_ids) - len(config.get("rootfs", {}).get("diff_ids") or [])
        config["history"] = list(config["history"]) + [
            {"created_by": "spire_fabric image build"} for _ in range(max(added, 0))
        ]
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return config


def write_image(out: Path, ref: str, layers: Sequence[Layer], config: dict[str, Any]) -> None:
    """Write an OCI image-layout tarball of ``layers`` and ``config``, named ``ref``."""
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": CONFIG_TYPE,
            "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
            "size": len(config_bytes),
        },
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    name = normalized(ref)
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
            "size": len(manifest_bytes),
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name,
            },
        }],
    }  # fmt: skip

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
        tar.addfile(info, io.BytesIO(data))

    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w") as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", json.dumps(index).encode())
        for data in (config_bytes, manifest_bytes):
            add_bytes(tar, f"blobs/sha256/{hashlib.sha256(data).hexdigest()}", data)
        written = set()
        for layer in layers:
            if layer.digest in written:
                continue
            written.add(layer.digest)
            info = fixed(tar.gettarinfo(str(layer.path), f"blobs/sha256/{layer.digest[7:]}"))
            info.mode = 0o644
            with open(layer.path, "rb") as fh:
                tar.addfile(info, fh)
    tmp.replace(out)


def write_oci_image(
    out: Path, ref: str, layers: Sequence[Path], entrypoint: Sequence[str], env: Sequence[str] = ()
) -> None:
    """An image of our own uncompressed ``layers`` alone (the harness's binary images)."""
    blobs = [tar_layer(p) for p in layers]
    write_image(out, ref, blobs, image_config(blobs, entrypoint=entrypoint, env=env))
