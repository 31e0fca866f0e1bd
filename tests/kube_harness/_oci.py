"""OCI image-layout tarballs written with `tarfile`, which `ctr images import` loads.

An image is an `oci-layout`, an `index.json` whose manifest carries the
`io.containerd.image.name` annotation, a config and uncompressed tar layers. Every mtime and
owner is fixed, so the same inputs give the same layer digests (containerd then stores a
shared layer once). Kept apart from the harness's image set: the project's own image
builder (issue 20, `deploy image build`) will need exactly this.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
EPOCH = 1_700_000_000  # fixed mtime: the same inputs give the same layer digest


def files_layer(files: Sequence[tuple[str, Path]], out: Path) -> Path:
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
            info = tar.gettarinfo(str(src), arcname="/".join(parts))
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
            info.mode = 0o755 if os.access(src, os.X_OK) else 0o644
            with open(src, "rb") as fh:
                tar.addfile(info, fh)
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_oci_image(out: Path, ref: str, layers: Sequence[Path], entrypoint: Sequence[str],
                    env: Sequence[str] = ()) -> None:
    """Write an OCI image-layout tarball that `ctr images import` accepts."""
    layer_descs = []
    for layer in layers:
        layer_descs.append((layer, sha256_file(layer), layer.stat().st_size))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": list(entrypoint),
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    *env],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for _, d, _ in layer_descs]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": LAYER_TYPE, "digest": f"sha256:{d}", "size": s}
            for _, d, s in layer_descs
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    tag = ref.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
            "size": len(manifest_bytes),
            "annotations": {
                "io.containerd.image.name": ref,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
        tar.addfile(info, io.BytesIO(data))

    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", json.dumps(index).encode())
        for data in (config_bytes, manifest_bytes):
            add_bytes(tar, f"blobs/sha256/{hashlib.sha256(data).hexdigest()}", data)
        for layer, digest, _ in layer_descs:
            tar.add(layer, arcname=f"blobs/sha256/{digest}")
    tmp.rename(out)


