"""Container images for the test clusters, built here without a registry.

An image is an OCI image-layout tarball (`_oci`), which `ctr -n k8s.io images import` loads
into a node's containerd. Pods use them with `imagePullPolicy: Never`.

Layers:
- a Debian bookworm base (`debootstrap --variant=minbase` from the mirror apt already
  uses, with python3 and CA certificates), shared by every image but pause, so containerd
  stores it once;
- one small layer per image with its binaries (or, for the project image, this project and
  its dependencies installed with pip for the base's Python: `_project_image`).

Everything is cached under `~/.cache/spire-fabric/images/`, keyed by the versions that went
in, so a version bump builds a new tarball.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kube_harness import _build
from kube_harness._build import KubeBuildError
from kube_harness._oci import EPOCH, files_layer, write_oci_image
from kube_harness._project_image import PROJECT_ENV, project_layer, project_source_hash
from spire_fabric._filelock import file_lock
from spire_fabric._run import CommandError, run
from spire_fabric._version import __version__
from spire_fabric.runtime._gobuild import cache_root

REGISTRY = "spire-fabric.local"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "ca-certificates")
MARIADB_PACKAGES = ("mariadb-server", "ca-certificates")


def images_dir() -> Path:
    return cache_root() / "images"


@dataclass(frozen=True)
class Image:
    """One image: its full reference, the tarball it lives in, and how it starts."""

    repo: str
    tag: str
    files: tuple[tuple[str, Path], ...]  # (path in the image, file on the host)
    entrypoint: tuple[str, ...]
    base: tuple[str, ...] | None = BASE_PACKAGES  # Debian packages of the base layer
    env: tuple[str, ...] = ()
    extra_layer: Callable[[Path], Path] | None = field(default=None, compare=False)

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.repo}:{self.tag}"

    @property
    def tarball(self) -> Path:
        """Named by tag and by how the image is made (entrypoint, env, base, file paths),
        so changing the recipe rebuilds rather than reusing a stale cached image."""
        recipe = repr((self.entrypoint, self.env, self.base, [a for a, _ in self.files]))
        key = hashlib.sha256(recipe.encode()).hexdigest()[:8]
        return images_dir() / f"{self.repo}_{self.tag}_{key}.oci.tar"


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
    raise KubeBuildError("no Debian mirror found in apt's sources")


def _base_key(packages: Sequence[str]) -> str:
    return f"debian-{BASE_SUITE}-minbase-" + "-".join(packages)


def ensure_base_layer(packages: Sequence[str] = BASE_PACKAGES,
                      say: Callable[[str], None] = print) -> Path:
    """A tar layer of a minimal Debian with `packages`, built once with debootstrap.

    Two stages, with a `policy-rc.d` in between, so no package's maintainer script starts
    a service (MariaDB's would) inside the build root.
    """
    key = _base_key(packages)
    layer = images_dir() / f"{key}.layer.tar"
    if layer.is_file():
        return layer
    images_dir().mkdir(parents=True, exist_ok=True)
    with file_lock(images_dir() / f".{key}.lock"):
        if layer.is_file():
            return layer
        if shutil.which("debootstrap") is None:
            raise KubeBuildError("debootstrap is not installed (apt-get install debootstrap)")
        root = images_dir() / f".{key}.rootfs"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        say(f"kube-images: debootstrap {BASE_SUITE} minbase + {','.join(packages)}")
        t0 = time.monotonic()
        run(["debootstrap", "--foreign", "--variant=minbase", f"--include={','.join(packages)}",
             BASE_SUITE, str(root), debian_mirror()], tail_lines=10, error=KubeBuildError)
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        run(["chroot", str(root), "/debootstrap/debootstrap", "--second-stage"],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}, tail_lines=10,
            error=KubeBuildError)
        policy.unlink(missing_ok=True)  # debootstrap may remove it itself
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/locale", "var/log", "debootstrap"):
            target = root / junk
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        tmp = layer.with_suffix(".partial")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(root.iterdir()):
                if entry.name in ("proc", "sys", "dev", "debootstrap"):
                    if entry.name == "debootstrap":
                        continue
                    info = tarfile.TarInfo(entry.name)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                    tar.addfile(info)
                    continue
                tar.add(entry, arcname=entry.name)
        tmp.rename(layer)
        shutil.rmtree(root, ignore_errors=True)
        say(f"kube-images: base layer {key} in {time.monotonic() - t0:.0f} s")
    return layer


def image_set(project_version: str = __version__) -> dict[str, Image]:
    """Every image the test clusters use, by short name; the project image is tagged with
    this package's version (``spire_fabric._version``) and a hash of its source."""
    from spire_fabric.runtime.binaries import SPIRE_VERSION, spire_cache_dir

    kube = _build.PARTS["kubernetes"].bin_dir
    spire = spire_cache_dir()
    return {
        "pause": Image("pause", f"v{_build.KUBERNETES_VERSION}", (("pause", kube / "pause"),),
                       ("/pause",), base=None),
        "coredns": Image("coredns", _build.COREDNS_VERSION,
                         (("usr/local/bin/coredns", _build.PARTS["coredns"].bin_dir / "coredns"),),
                         ("/usr/local/bin/coredns",)),
        "python": Image("python", f"3.11-{BASE_SUITE}", (), ("python3",)),
        "spire-fabric": Image(
            "spire-fabric-python", f"{project_version}-py3.11-{project_source_hash()}", (),
            ("python3",), env=PROJECT_ENV, extra_layer=project_layer),
        "spire-server": Image("spire-server", SPIRE_VERSION,
                              (("opt/spire/bin/spire-server", spire / "spire-server"),),
                              ("/opt/spire/bin/spire-server", "run")),
        "spire-agent": Image("spire-agent", SPIRE_VERSION,
                             (("opt/spire/bin/spire-agent", spire / "spire-agent"),),
                             ("/opt/spire/bin/spire-agent", "run")),
        "spire-controller-manager": Image(
            "spire-controller-manager", _build.SPIRE_CONTROLLER_MANAGER_VERSION,
            (("usr/local/bin/spire-controller-manager",
              _build.PARTS["spire-controller-manager"].bin_dir / "spire-controller-manager"),),
            ("/usr/local/bin/spire-controller-manager",)),
        "mariadb": Image("mariadb", mariadb_version(), (), (MARIADB_ENTRYPOINT_PATH,),
                         base=MARIADB_PACKAGES, extra_layer=_mariadb_layer),
    }


MARIADB_ENTRYPOINT_PATH = "/usr/local/bin/sfk-mariadb-entrypoint"
# The environment contract of the official MySQL image, which the rendered production
# manifests use (MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD; data in
# /var/lib/mysql; any uid that owns the data directory).
MARIADB_ENTRYPOINT = """#!/bin/sh
set -eu
datadir=/var/lib/mysql
run=/var/run/mysqld
mkdir -p "$run"
user_opt=""
[ "$(id -u)" = 0 ] && user_opt=--user=root
# Debian's package already made a data directory in the image; a mounted volume is empty.
# Either way the variables are applied once, recorded by a marker file.
if [ ! -e "$datadir/.sfk-initialized" ]; then
  mariadb-install-db --datadir="$datadir" $user_opt --auth-root-authentication-method=normal \\
    --skip-test-db >/dev/null
  mariadbd --datadir="$datadir" $user_opt --skip-networking --skip-name-resolve \\
    --socket="$run/init.sock" &
  pid=$!
  i=0
  until mariadb --socket="$run/init.sock" -uroot -e 'select 1' >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 120 ] || { echo "mariadb did not start" >&2; exit 1; }
    sleep 0.5
  done
  mariadb --socket="$run/init.sock" -uroot <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';
CREATE DATABASE IF NOT EXISTS \\`${MYSQL_DATABASE}\\`;
CREATE USER IF NOT EXISTS '${MYSQL_USER}'@'%' IDENTIFIED BY '${MYSQL_PASSWORD}';
GRANT ALL ON \\`${MYSQL_DATABASE}\\`.* TO '${MYSQL_USER}'@'%';
FLUSH PRIVILEGES;
SQL
  kill "$pid"
  wait "$pid" || true
  touch "$datadir/.sfk-initialized"
fi
exec mariadbd --datadir="$datadir" $user_opt --bind-address=0.0.0.0 --port=3306 \\
  --skip-name-resolve --socket="$run/mysqld.sock" "$@"
"""


def _mariadb_layer(out: Path) -> Path:
    script = out.parent / "entrypoint.sh"
    script.write_text(MARIADB_ENTRYPOINT)
    script.chmod(0o755)
    return files_layer([(MARIADB_ENTRYPOINT_PATH.lstrip("/"), script)], out)


@functools.lru_cache(maxsize=1)
def mariadb_version() -> str:
    """The upstream version of bookworm main's mariadb-server (what debootstrap installs)."""
    proc = run(["apt-cache", "madison", "mariadb-server"], check=False)
    for line in proc.stdout.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) == 3 and f" {BASE_SUITE}/main " in f" {cols[2]} ":
            version = cols[1].split(":", 1)[-1]
            return version.split("-", 1)[0]
    return "unknown"


def ensure_image(image: Image, say: Callable[[str], None] = print) -> Path:
    if image.tarball.is_file():
        return image.tarball
    images_dir().mkdir(parents=True, exist_ok=True)
    with file_lock(images_dir() / f".{image.repo}.lock"):
        if image.tarball.is_file():
            return image.tarball
        t0 = time.monotonic()
        layers: list[Path] = []
        if image.base is not None:
            layers.append(ensure_base_layer(image.base, say))
        work = images_dir() / f".{image.repo}_{image.tag}.work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            if image.files:
                layers.append(files_layer(image.files, work / "files.layer.tar"))
            if image.extra_layer is not None:
                layers.append(image.extra_layer(work / "extra.layer.tar"))
            write_oci_image(image.tarball, image.ref, layers, image.entrypoint, image.env)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        # Older tags of the same image (the project image of older checkouts) pile up; one
        # untouched for a day is dead (another checkout may still be using a newer one).
        for old in images_dir().glob(f"{image.repo}_*.oci.tar"):
            if old != image.tarball and old.stat().st_mtime < time.time() - 86400:
                old.unlink(missing_ok=True)
        say(f"kube-images: {image.ref} in {time.monotonic() - t0:.0f} s")
    return image.tarball


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:])
    images = image_set()
    for name in names or list(images):
        try:
            path = ensure_image(images[name], lambda m: print(m, flush=True))
        except (KubeBuildError, CommandError) as exc:
            print(f"kube-images: {name}: {exc}", file=sys.stderr)
            return 1
        print(f"kube-images: {images[name].ref}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
