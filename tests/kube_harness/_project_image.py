"""The project's workload image layer: spire_fabric and the examples, installed with pip for
the base image's Python (3.11, manylinux wheels), plus the `python` name the rendered
workloads run.

Kept on its own, apart from the harness-only images (Kubernetes' own, MariaDB): it is to
become the shipped `python -m spire_fabric.deploy image build` (issue 20, item 7), which the
harness will then call instead.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import tarfile
from pathlib import Path

from kube_harness._oci import EPOCH
from spire_fabric._run import run

SITE = "/opt/spire-fabric/site"
PROJECT_ENV = (f"PYTHONPATH={SITE}",)


def project_root() -> Path:
    """The checkout this harness belongs to (tests/kube_harness/ is two levels down)."""
    return Path(__file__).resolve().parents[2]


def project_layer(out: Path) -> Path:
    """This project and its runtime dependencies, installed for the base image's Python."""
    project = project_root()
    site = out.parent / (out.name + ".site")
    shutil.rmtree(site, ignore_errors=True)
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
         "--target", str(site / SITE.lstrip("/")), "--python-version", "3.11",
         "--only-binary=:all:", "--platform", "manylinux2014_x86_64", str(project)],
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, tail_lines=10)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(site.rglob("*")):
            rel = path.relative_to(site).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
            if path.is_file() and not path.is_symlink():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
        # `python`, as the official python images have it: the rendered workloads run
        # `python -m …`, and Debian's package names only python3.
        link = tarfile.TarInfo("usr/local/bin/python")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/usr/bin/python3", 0o777
        link.mtime = EPOCH
        tar.addfile(link)
    shutil.rmtree(site, ignore_errors=True)
    return out


@functools.cache
def project_source_hash() -> str:
    """A short hash of what goes into the project image, in its tag: the examples and the
    library the pods run are the checkout's, never a stale build of an older one. Once per
    process, so every cluster is loaded with, and every `deploy` is told, the same tag."""
    project = project_root()
    digest = hashlib.sha256()
    files = [project / "pyproject.toml", project / "setup.py"]
    for root in (project / "src" / "spire_fabric", project / "examples"):
        files += sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for f in files:
        if f.is_file():
            digest.update(f.relative_to(project).as_posix().encode() + b"\0")
            digest.update(f.read_bytes() + b"\0")
    return digest.hexdigest()[:10]
