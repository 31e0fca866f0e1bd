"""The project's layer: spire_fabric (the examples included, as `spire_fabric.examples`)
and its runtime dependencies, installed with `pip install --target` for the base's Python
and architecture, plus the `python` name the rendered workloads run where the base lacks it.

What is installed is the spire_fabric of the running interpreter: its project directory
when it is installed editable (a checkout), else a wheel repacked from the installed files
(their RECORD lists them), so the image holds exactly the code that built it, whether or
not that version is on an index.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from spire_fabric._run import run
from spire_fabric.runtime.images._errors import ImageBuildError
from spire_fabric.runtime.images._oci import EPOCH, fixed

DISTRIBUTION = "spire-fabric"
SITE = "/opt/spire-fabric/site"
PROJECT_ENV = (f"PYTHONPATH={SITE}",)
_PLATFORM = {"amd64": "x86_64", "arm64": "aarch64"}
# What a wheel of the project is built from (the Containerfile copies the same): a copy of
# only these keeps setuptools' build/ out of the checkout, and a stale build/lib (a module
# since deleted) out of the image.
WHEEL_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "src", "examples")
# Not part of what a wheel holds: pip writes these when it installs one.
_INSTALL_RECORDS = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def installed_source(work: Path) -> Path:
    """What pip is to install: the project directory of an editable install, else a wheel
    repacked from the installed distribution into ``work``."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as err:
        raise ImageBuildError(
            "spire-fabric is not installed in this interpreter (pip install spire-fabric)"
        ) from err
    direct = dist.read_text("direct_url.json")
    if direct:
        info = json.loads(direct)
        if (info.get("dir_info") or {}).get("editable"):
            project = Path(unquote(urlparse(info["url"]).path))
            if (project / "pyproject.toml").is_file():
                return project
    return repack(dist, work)


def clean_copy(project: Path, into: Path) -> Path:
    """The project's :data:`WHEEL_INPUTS` copied into ``into``, without caches."""
    for name in WHEEL_INPUTS:
        src = project / name
        if src.is_dir():
            skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(src, into / name, ignore=skip)
        elif src.is_file():
            into.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into / name)
    if not (into / "pyproject.toml").is_file():
        raise ImageBuildError(f"{project} is not the spire_fabric project (no pyproject.toml)")
    return into


def repack(dist: metadata.Distribution, work: Path) -> Path:
    """A wheel of an installed distribution, from the files its RECORD lists (scripts and
    caches left out; the RECORD rewritten for what is in it)."""
    files = [f for f in dist.files or [] if f.parts[0] != ".." and "__pycache__" not in f.parts]
    if not files:
        raise ImageBuildError(f"{DISTRIBUTION} {dist.version}: its installed files are unknown")
    name = dist.metadata["Name"].replace("-", "_")
    info_dir = f"{name}-{dist.version}.dist-info"
    work.mkdir(parents=True, exist_ok=True)
    wheel = work / f"{name}-{dist.version}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(files, key=str):
            if len(f.parts) == 2 and f.parts[0].endswith(".dist-info"):
                if f.parts[1] in _INSTALL_RECORDS:
                    continue
                arc = f"{info_dir}/{f.parts[1]}"
            else:
                arc = f.as_posix()
            data = Path(str(dist.locate_file(f))).read_bytes()
            zf.writestr(zipfile.ZipInfo(arc, (2023, 11, 14, 22, 13, 20)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{arc},sha256={digest.decode()},{len(data)}")
        records.append(f"{info_dir}/RECORD,,")
        zf.writestr(zipfile.ZipInfo(f"{info_dir}/RECORD", (2023, 11, 14, 22, 13, 20)),
                    "\n".join(records) + "\n")  # fmt: skip
    return wheel


def pip_install(source: Path, site: Path, python_minor: int, architecture: str) -> None:
    """``source`` and its dependencies, as wheels for CPython 3.N on manylinux."""
    if architecture not in _PLATFORM:
        raise ImageBuildError(f"no wheels for a {architecture} image (amd64 or arm64)")
    arch = _PLATFORM[architecture]
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
         "--target", str(site), "--python-version", f"3.{python_minor}",
         "--only-binary=:all:", "--platform", f"manylinux2014_{arch}",
         "--platform", f"manylinux_2_28_{arch}", str(source)],
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, tail_lines=10,
        what="pip install (the image's site directory)", error=ImageBuildError)  # fmt: skip


def project_layer(out: Path, site_root: Path, python_link: str | None) -> Path:
    """The tar layer of ``site_root`` (the image's file tree), reproducible, and the
    `python` symlink to ``python_link`` when given (Debian names only python3)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(site_root.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(site_root).as_posix()
            info = fixed(tar.gettarinfo(str(path), arcname=rel))
            if path.is_file() and not path.is_symlink():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
        if python_link:
            for d in ("usr", "usr/local", "usr/local/bin"):
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                tar.addfile(info)
            link = tarfile.TarInfo("usr/local/bin/python")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, python_link, 0o777
            link.mtime = EPOCH
            tar.addfile(link)
    return out


def build_site(source: Path, work: Path, python_minor: int, architecture: str) -> Path:
    """The image's file tree under ``work`` with the site directory filled; its root."""
    root = work / "rootfs"
    shutil.rmtree(root, ignore_errors=True)
    site = root / SITE.lstrip("/")
    pip_install(source, site, python_minor, architecture)
    # Not reproducible and of no use in the image: console scripts whose shebang is this
    # interpreter's path, and where pip installed spire_fabric from (a temporary copy).
    shutil.rmtree(site / "bin", ignore_errors=True)
    for direct_url in site.glob("*.dist-info/direct_url.json"):
        direct_url.unlink()
        record = direct_url.with_name("RECORD")
        lines = record.read_text().splitlines(keepends=True)
        record.write_text("".join(x for x in lines if "/direct_url.json," not in x))
    return root
