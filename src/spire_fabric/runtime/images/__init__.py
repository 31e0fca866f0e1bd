"""The project's workload image, built without a daemon or a registry:
`python -m spire_fabric.deploy image build` writes it as an OCI archive that
`kind load image-archive`, `k3d image import`, `ctr images import`, `podman load`,
`docker load` and `skopeo copy oci-archive:…` accept.

Layers: a base with Python 3 (Debian 12 made with debootstrap by default, or any image
given as an OCI archive), then spire_fabric with its examples and dependencies under
``/opt/spire-fabric/site`` (``PYTHONPATH``), so the `python -m …` the rendered workloads
run finds them. The repository's `Containerfile` makes the same image for
docker/podman/buildah users.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spire_fabric._version import __version__
from spire_fabric.runtime.images._base import Base, debian_base, find_python, read_archive
from spire_fabric.runtime.images._debian import ensure_base_layer
from spire_fabric.runtime.images._errors import ImageBuildError
from spire_fabric.runtime.images._oci import (
    image_config,
    normalized,
    parse_reference,
    registry_host,
    tar_layer,
    write_image,
)
from spire_fabric.runtime.images._project import (
    PROJECT_ENV,
    SITE,
    build_site,
    clean_copy,
    installed_source,
    project_layer,
)

__all__ = [
    "BUILD_COMMAND",
    "PROJECT_ENV",
    "REPOSITORY",
    "SITE",
    "BuiltImage",
    "ImageBuildError",
    "build_project_image",
    "default_reference",
    "is_project_image",
    "missing_image_hint",
    "normalized",
    "registry_host",
]

REPOSITORY = "spire-fabric"
BUILD_COMMAND = "python -m spire_fabric.deploy image build -o spire-fabric.tar"
CMD = ("python",)


def default_reference() -> str:
    """``spire-fabric:<version>``: the topology's default workload image."""
    return f"{REPOSITORY}:{__version__}"


def is_project_image(ref: str) -> bool:
    """Whether ``ref`` names this project's image (any tag, any registry)."""
    name = ref.split("@", 1)[0]
    parsed = parse_reference(name)
    repo = parsed[0] if parsed else name
    return repo.rsplit("/", 1)[-1] == REPOSITORY


def missing_image_hint(ref: str) -> str:
    """How to get the project's image ``ref`` onto a cluster's nodes, in one sentence."""
    default = normalized(ref) == normalized(default_reference())
    build = BUILD_COMMAND if default else f"{BUILD_COMMAND} --tag {ref}"
    return (
        f"build it with `{build}` and load it (`kind load image-archive spire-fabric.tar`, "
        "`k3d image import spire-fabric.tar`, `ctr -n k8s.io images import spire-fabric.tar` "
        "on each node, or push it to a registry), or pass --image workload=REF"
    )


@dataclass(frozen=True)
class BuiltImage:
    """What `build_project_image` wrote."""

    reference: str  # as given (`spire-fabric:0.1.0`)
    name: str  # as containerd and the kubelet name it (`docker.io/library/spire-fabric:0.1.0`)
    archive: Path
    size: int
    base: str
    python: str  # the interpreter the wheels were chosen for, e.g. "3.11"


def build_project_image(
    out: Path,
    *,
    reference: str | None = None,
    base: Path | None = None,
    source: Path | None = None,
    say: Callable[[str], None] = print,
) -> BuiltImage:
    """Write the project image to ``out`` as an OCI archive.

    ``base``: an OCI archive of a Python 3.10+ image (default: the Debian 12 layer, built
    once with debootstrap as root). ``source``: a project directory or a wheel to install
    (default: the spire_fabric of this interpreter).
    """
    ref = reference or default_reference()
    if parse_reference(ref) is None:
        raise ImageBuildError(f"--tag {ref!r} is not an image reference NAME:TAG")
    if out.is_dir():
        raise ImageBuildError(f"-o {out} is a directory; name the archive to write")
    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".image-", dir=out.parent))
    try:
        base_image: Base = (
            read_archive(base, work / "base") if base is not None
            else debian_base(ensure_base_layer(say=say))
        )  # fmt: skip
        python = find_python(base_image)
        origin = source if source is not None else installed_source(work / "wheel")
        what = clean_copy(origin, work / "project") if origin.is_dir() else origin
        say(f"image: installing {origin} for Python 3.{python.minor} on {base_image.source}")
        root = build_site(what, work, python.minor, base_image.architecture)
        layer = tar_layer(
            project_layer(
                work / "project.layer.tar", root, None if python.has_python_name else python.path
            )
        )
        layers = [*base_image.layers, layer]
        config = image_config(layers, base=base_image.config, cmd=CMD, entrypoint=(),
                              env=PROJECT_ENV)  # fmt: skip
        write_image(out, ref, layers, config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"image: {ref} in {time.monotonic() - t0:.0f} s")
    return BuiltImage(ref, normalized(ref), out, out.stat().st_size, base_image.source,
                      f"3.{python.minor}")  # fmt: skip
