"""A base image to put the project's layer on: one the user has as an OCI archive
(`--base`), or the default Debian layer, and what its Python is.

The base's layers are copied as stored (their digests checked); only its config is read.
Which Python it has is read from its layers' file lists, so the wheels are chosen for that
interpreter and the `python` name is added only where the base lacks it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spire_fabric.runtime.images._errors import ImageBuildError
from spire_fabric.runtime.images._oci import Layer, tar_layer

_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_PYTHON = re.compile(r"^(?:\./)?(usr/local/bin|usr/bin)/python3\.(\d+)$")


@dataclass(frozen=True)
class Base:
    """A base image: its layers (as stored), its config, and where it came from."""

    layers: tuple[Layer, ...]
    config: dict[str, Any] = field(hash=False)
    source: str

    @property
    def architecture(self) -> str:
        return str(self.config.get("architecture") or "amd64")


@dataclass(frozen=True)
class Python:
    """The base's interpreter: its version, its path, and whether `python` exists."""

    minor: int
    path: str
    has_python_name: bool


def host_architecture() -> str:
    machine = platform.machine()
    if machine not in _ARCH:
        raise ImageBuildError(f"no image can be built on a {machine} host (amd64 or arm64)")
    return _ARCH[machine]


def debian_base(layer: Path) -> Base:
    config = {"architecture": host_architecture(), "os": "linux", "config": {}}
    return Base((tar_layer(layer),), config, f"Debian ({layer.name})")


def read_archive(archive: Path, work: Path) -> Base:
    """The image in an OCI archive, its layer blobs extracted into ``work``."""
    if not archive.is_file():
        raise ImageBuildError(f"--base {archive}: no such file")
    try:
        tar = tarfile.open(archive)  # noqa: SIM115 (closed by the `with` below)
    except (tarfile.TarError, OSError) as err:
        raise ImageBuildError(f"--base {archive}: not a tar archive") from err
    with tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}

        def blob(digest: str) -> tarfile.TarInfo:
            algo, _, hexdigest = digest.partition(":")
            m = members.get(f"blobs/{algo}/{hexdigest}")
            if m is None:
                raise ImageBuildError(f"--base {archive}: blob {digest} is missing")
            return m

        def read_json(m: tarfile.TarInfo) -> Any:
            fh = tar.extractfile(m)
            assert fh is not None
            data = fh.read()
            return json.loads(data), data

        if "index.json" not in members:
            if "manifest.json" in members:
                raise ImageBuildError(
                    f"--base {archive} is a docker-archive, not an OCI archive: convert it "
                    f"with `skopeo copy docker-archive:{archive} oci-archive:base-oci.tar`"
                )
            raise ImageBuildError(f"--base {archive}: no index.json (not an OCI image layout)")
        index, _ = read_json(members["index.json"])
        manifest = _pick_manifest(index, archive, lambda d: read_json(blob(d))[0])
        config, _ = read_json(blob(manifest["config"]["digest"]))
        layers = []
        work.mkdir(parents=True, exist_ok=True)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(manifest.get("layers") or []):
            raise ImageBuildError(f"--base {archive}: config and manifest disagree on layers")
        for desc, diff_id in zip(manifest["layers"], diff_ids, strict=True):
            out = work / desc["digest"].replace(":", "-")
            src = tar.extractfile(blob(desc["digest"]))
            assert src is not None
            h = hashlib.sha256()
            with open(out, "wb") as dst:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    dst.write(chunk)
            if "sha256:" + h.hexdigest() != desc["digest"]:
                raise ImageBuildError(f"--base {archive}: blob {desc['digest']} is corrupt")
            layers.append(Layer(out, desc["mediaType"], desc["digest"], desc["size"], diff_id))
    return Base(tuple(layers), config, str(archive))


def _pick_manifest(index: Any, archive: Path, load: Any) -> Any:
    """The one image manifest of the archive, through a multi-platform index if needed."""
    arch = host_architecture()
    descs = index.get("manifests") or []
    for _ in range(3):
        if len(descs) != 1:
            descs = [
                d for d in descs
                if (d.get("platform") or {}).get("os", "linux") == "linux"
                and (d.get("platform") or {}).get("architecture", arch) == arch
            ]  # fmt: skip
        if len(descs) != 1:
            raise ImageBuildError(
                f"--base {archive} holds {len(descs) or 'no'} linux/{arch} images; "
                "pass an archive of one (`skopeo copy` without --all)"
            )
        doc = load(descs[0]["digest"])
        if doc.get("mediaType", descs[0].get("mediaType")) in _INDEX_TYPES or ("manifests" in doc):
            descs = doc.get("manifests") or []
            continue
        return doc
    raise ImageBuildError(f"--base {archive}: indexes nested too deep")


def find_python(base: Base) -> Python:
    """The newest python3.N in the base's layers (a later layer's file counts as well)."""
    found: dict[int, str] = {}
    names: set[str] = set()
    for layer in base.layers:
        if "zstd" in layer.media_type:
            raise ImageBuildError(
                f"{base.source}: its layers are zstd-compressed, which Python cannot read; "
                "pass a gzip or uncompressed base (`skopeo copy --dest-compress-format gzip …`)"
            )
        with tarfile.open(layer.path, "r:*") as tar:
            for m in tar:
                name = m.name.removeprefix("./")
                match = _PYTHON.match(name)
                if match and not m.isdir():
                    found[int(match.group(2))] = "/" + name
                if name in ("usr/local/bin/python", "usr/bin/python"):
                    names.add(name)
    if not found:
        raise ImageBuildError(
            f"{base.source} has no python3 (usr/bin or usr/local/bin): pass a Python 3.10+ "
            "image as --base"
        )
    minor = max(found)
    if minor < 10:
        raise ImageBuildError(f"{base.source} has Python 3.{minor}; spire_fabric needs 3.10+")
    return Python(minor, found[minor], bool(names))
