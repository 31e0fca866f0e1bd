"""The default base: a minimal Debian 12 (bookworm) root with Python 3.11, made with
`debootstrap` from the mirror apt already uses, as one cached tar layer.

Why Debian and not `python:3.11-slim`: nothing here may pull from a registry, and
bookworm's python3 is the 3.11 the image's wheels are chosen for. It needs root (debootstrap
chroots), debootstrap and a Debian mirror; without them `image build --base` takes any
Python image the user has as an OCI archive instead.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from spire_fabric._filelock import file_lock
from spire_fabric._run import run
from spire_fabric.runtime._gobuild import cache_root
from spire_fabric.runtime.images._errors import ImageBuildError
from spire_fabric.runtime.images._oci import EPOCH

SUITE = "bookworm"
PACKAGES = ("python3", "ca-certificates")
_BASE_HINT = (
    "or pass --base OCI-ARCHIVE, a Python 3 image as an OCI archive "
    "(`skopeo copy docker://python:3.11-slim oci-archive:base.tar`)"
)


def images_dir() -> Path:
    """`~/.cache/spire-fabric/images`: base layers and the harness's images."""
    return cache_root() / "images"


def debian_mirror() -> str:
    """The Debian mirror apt already uses (deb822 sources first, then sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for m in re.finditer(r"^URIs:\s*(\S+)", path.read_text(), re.M):
            if "security" not in m.group(1):
                return m.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        deb = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", legacy.read_text(), re.M)
        if deb:
            return deb.group(1)
    raise ImageBuildError(
        f"the default base (Debian {SUITE}) needs a Debian mirror in apt's sources "
        f"(/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list); {_BASE_HINT}"
    )


def _key(packages: Sequence[str]) -> str:
    return f"debian-{SUITE}-minbase-" + "-".join(packages)


def base_layer_path(packages: Sequence[str] = PACKAGES) -> Path:
    return images_dir() / f"{_key(packages)}.layer.tar"


def ensure_base_layer(
    packages: Sequence[str] = PACKAGES, say: Callable[[str], None] = print
) -> Path:
    """A tar layer of a minimal Debian with ``packages``, built once with debootstrap.

    Two stages, with a `policy-rc.d` in between, so no package's maintainer script starts
    a service (MariaDB's would) inside the build root.
    """
    layer = base_layer_path(packages)
    if layer.is_file():
        return layer
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"the default base (Debian {SUITE} made with debootstrap) must be built as root "
            f"once; {_BASE_HINT}"
        )
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            f"the default base (Debian {SUITE}) needs debootstrap: apt-get install "
            f"debootstrap; {_BASE_HINT}"
        )
    mirror = debian_mirror()
    images_dir().mkdir(parents=True, exist_ok=True)
    with file_lock(images_dir() / f".{_key(packages)}.lock"):
        if layer.is_file():
            return layer
        root = images_dir() / f".{_key(packages)}.rootfs"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        say(f"image: debootstrap {SUITE} minbase + {','.join(packages)}")
        t0 = time.monotonic()
        run(["debootstrap", "--foreign", "--variant=minbase", f"--include={','.join(packages)}",
             SUITE, str(root), mirror], tail_lines=10, error=ImageBuildError)  # fmt: skip
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        run(["chroot", str(root), "/debootstrap/debootstrap", "--second-stage"],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}, tail_lines=10,
            error=ImageBuildError)  # fmt: skip
        policy.unlink(missing_ok=True)  # debootstrap may remove it itself
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/locale", "var/log"):  # fmt: skip
            target = root / junk
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        shutil.rmtree(root / "debootstrap", ignore_errors=True)

        def stamp(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.mtime = EPOCH  # owners stay: Debian's files are not all root's
            return info

        tmp = layer.with_name(layer.name + ".partial")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(root.iterdir()):
                if entry.name in ("proc", "sys", "dev"):
                    info = tarfile.TarInfo(entry.name)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                    tar.addfile(info)
                    continue
                tar.add(entry, arcname=entry.name, filter=stamp)
        tmp.replace(layer)
        shutil.rmtree(root, ignore_errors=True)
        say(f"image: base layer {layer.name} in {time.monotonic() - t0:.0f} s")
    return layer
