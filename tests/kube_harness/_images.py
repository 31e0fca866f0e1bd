"""Container images for the test clusters, built here without a registry.

An image is an OCI image-layout tarball (`spire_fabric.runtime.images._oci`), which
`ctr -n k8s.io images import` loads into a node's containerd. Pods use them with
`imagePullPolicy: Never`.

Layers:
- a Debian bookworm base (`debootstrap --variant=minbase` from the mirror apt already
  uses, with python3 and CA certificates: the shipped builder's default base), shared by
  every image but pause, so containerd stores it once;
- one small layer per image with its binaries. The project image is the shipped
  `deploy image build` (`spire_fabric.runtime.images`) run on this checkout; only the
  harness-only images (Kubernetes' own, CoreDNS, pause, MariaDB, SPIRE's) are made here.

Everything is cached under `~/.cache/spire-fabric/images/`, keyed by the versions that went
in, so a version bump builds a new tarball.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kube_harness import _build
from kube_harness._build import KubeBuildError
from spire_fabric._filelock import file_lock
from spire_fabric._run import CommandError, run
from spire_fabric._version import __version__
from spire_fabric.runtime.images import ImageBuildError, build_project_image
from spire_fabric.runtime.images._debian import SUITE as BASE_SUITE
from spire_fabric.runtime.images._debian import ensure_base_layer, images_dir
from spire_fabric.runtime.images._oci import files_layer, write_oci_image

REGISTRY = "spire-fabric.local"
BASE_PACKAGES = ("python3", "ca-certificates")
MARIADB_PACKAGES = ("mariadb-server", "ca-certificates")
# Prometheus and Alertmanager: two images (each with its binary as entrypoint, as the
# official images have, so the rendered pods pass only arguments) on one base layer with
# both packages, which containerd stores once.
MONITORING_PACKAGES = ("prometheus", "prometheus-alertmanager", "ca-certificates")
# The project image again on a base with Debian's nginx, for the workloads that run it (the
# enterprise preset's inventory and catalog: `spire_fabric.examples.inventory`).
NGINX_PACKAGES = ("python3", "ca-certificates", "nginx")


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
    # What the extra layer holds, for the cache key (its function cannot say): a changed
    # entrypoint script must build a new tarball, not reuse the cached one.
    extra_layer_key: str = ""
    # Makes the whole image (out, ref, say) instead of base + files + extra layer.
    builder: Callable[[Path, str, Callable[[str], None]], None] | None = field(
        default=None, compare=False)

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.repo}:{self.tag}"

    @property
    def tarball(self) -> Path:
        """Named by tag and by how the image is made (entrypoint, env, base, file paths, the
        extra layer's content), so changing the recipe rebuilds rather than reusing a stale
        cached image."""
        recipe = repr((self.entrypoint, self.env, self.base, [a for a, _ in self.files]))
        if self.extra_layer_key:  # (images without one keep the keys they always had)
            recipe += self.extra_layer_key
        key = hashlib.sha256(recipe.encode()).hexdigest()[:8]
        return images_dir() / f"{self.repo}_{self.tag}_{key}.oci.tar"


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


def project_root() -> Path:
    """The checkout this harness belongs to (tests/kube_harness/ is two levels down)."""
    return Path(__file__).resolve().parents[2]


def _project_image(out: Path, ref: str, say: Callable[[str], None]) -> None:
    """The shipped builder (`deploy image build`), from this checkout, on the same Debian
    base layer as the harness's other images."""
    build_project_image(out, reference=ref, source=project_root(), say=say)


def _project_nginx_image(out: Path, ref: str, say: Callable[[str], None]) -> None:
    """The project image (`_project_image`) on a Debian base that also has nginx: the
    shipped builder's ``base`` is an OCI archive, written here from that one layer."""
    base = out.parent / f".{out.name}.base.oci.tar"
    try:
        write_oci_image(base, f"{REGISTRY}/python-nginx:base",
                        [ensure_base_layer(NGINX_PACKAGES, say)], ("python3",))
        build_project_image(out, reference=ref, base=base, source=project_root(), say=say)
    finally:
        base.unlink(missing_ok=True)


def image_set(project_version: str = __version__) -> dict[str, Image]:
    """Every image the test clusters use, by short name; the project image is tagged with
    this package's version (``spire_fabric._version``) and a hash of its source."""
    from spire_fabric.runtime.binaries import SPIRE_VERSION
    from spire_fabric.runtime.ghostunnel import GHOSTUNNEL_VERSION, ghostunnel_program

    kube = _build.PARTS["kubernetes"].bin_dir
    return {
        "pause": Image("pause", f"v{_build.KUBERNETES_VERSION}", (("pause", kube / "pause"),),
                       ("/pause",), base=None),
        "coredns": Image("coredns", _build.COREDNS_VERSION,
                         (("usr/local/bin/coredns", _build.PARTS["coredns"].bin_dir / "coredns"),),
                         ("/usr/local/bin/coredns",)),
        "python": Image("python", f"3.11-{BASE_SUITE}", (), ("python3",)),
        "spire-fabric": Image(
            "spire-fabric-python", f"{project_version}-py3.11-{project_source_hash()}", (),
            (), base=None, builder=_project_image),
        "spire-fabric-nginx": Image(
            "spire-fabric-python-nginx",
            f"{project_version}-py3.11-{debian_version('nginx')}-{project_source_hash()}", (),
            (), base=None, builder=_project_nginx_image),
        # ghostunnel is built with cgo (glibc): the Debian base has the C library
        "ghostunnel": Image("ghostunnel", GHOSTUNNEL_VERSION,
                            (("usr/local/bin/ghostunnel",
                              ghostunnel_program().bin_dir / "ghostunnel"),),
                            ("/usr/local/bin/ghostunnel",)),
        "spire-server": spire_image("spire-server", SPIRE_VERSION),
        "spire-agent": spire_image("spire-agent", SPIRE_VERSION),
        "spire-controller-manager": Image(
            "spire-controller-manager", _build.SPIRE_CONTROLLER_MANAGER_VERSION,
            (("usr/local/bin/spire-controller-manager",
              _build.PARTS["spire-controller-manager"].bin_dir / "spire-controller-manager"),),
            ("/usr/local/bin/spire-controller-manager",)),
        "kube-network-policies": Image(
            "kube-network-policies", _build.KUBE_NETWORK_POLICIES_VERSION,
            (("usr/local/bin/kube-network-policies",
              _build.PARTS["kube-network-policies"].bin_dir / "kube-network-policies"),),
            ("/usr/local/bin/kube-network-policies",)),
        "mariadb": Image("mariadb", mariadb_version(), (), (MARIADB_ENTRYPOINT_PATH,),
                         base=MARIADB_PACKAGES, extra_layer=_mariadb_layer,
                         extra_layer_key=hashlib.sha256(MARIADB_ENTRYPOINT.encode()).hexdigest()),
        "prometheus": Image("prometheus", debian_version("prometheus"), (),
                            ("/usr/bin/prometheus",), base=MONITORING_PACKAGES),
        "alertmanager": Image("alertmanager", debian_version("prometheus-alertmanager"), (),
                              ("/usr/bin/prometheus-alertmanager",), base=MONITORING_PACKAGES),
    }


def image_named(name: str | Image) -> Image:
    """An image of `image_set` by its short name, or the image itself (`spire_image`)."""
    if isinstance(name, Image):
        return name
    images = image_set()
    if name not in images:
        raise KeyError(f"no test image named {name!r}; the test images: {', '.join(images)}")
    return images[name]


def spire_image(program: str, version: str) -> Image:
    """``spire-server`` or ``spire-agent`` of one SPIRE release, from that release's cached
    binaries (`ensure_spire`). The pinned release's are in `image_set`; another release's
    (the upgrade rehearsal's 1.13.0) is made only when asked for, so setup never builds it."""
    from spire_fabric.runtime.binaries import spire_cache_dir

    binary = spire_cache_dir(version) / program
    return Image(program, version, ((f"opt/spire/bin/{program}", binary),),
                 (f"/opt/spire/bin/{program}", "run"))  # fmt: skip


MARIADB_ENTRYPOINT_PATH = "/usr/local/bin/sfk-mariadb-entrypoint"
# The environment contract of the official MySQL and MariaDB images, which the rendered
# production manifests use: MYSQL_DATABASE, MYSQL_USER, and the passwords as MYSQL_PASSWORD /
# MYSQL_ROOT_PASSWORD or, as the manifests do, from the files MYSQL_PASSWORD_FILE /
# MYSQL_ROOT_PASSWORD_FILE name (never both); data in /var/lib/mysql; any uid that owns
# the data directory; arguments go to the server (the manifests pass --ssl-cert, --ssl-key,
# --ssl-ca and --require-secure-transport=ON that way). A password read from a file stays a
# shell variable: mariadbd does not inherit it.
MARIADB_ENTRYPOINT = """#!/bin/sh
set -eu
datadir=/var/lib/mysql
run=/var/run/mysqld
# $1 from itself or from the file ${1}_FILE names, as the official images' file_env does.
file_env() {
  eval "value=\\${$1:-}; file=\\${$1_FILE:-}"
  if [ -n "$value" ] && [ -n "$file" ]; then
    echo "both $1 and $1_FILE are set; set one" >&2; exit 1
  fi
  if [ -n "$file" ]; then
    [ -r "$file" ] || { echo "$1_FILE: cannot read $file" >&2; exit 1; }
    value=$(cat "$file")
  fi
  eval "$1=\\$value"
}
mkdir -p "$run"
user_opt=""
[ "$(id -u)" = 0 ] && user_opt=--user=root
# Debian's package already made a data directory in the image; a mounted volume is empty.
# Either way the variables are applied once, recorded by a marker file.
if [ ! -e "$datadir/.sfk-initialized" ]; then
  file_env MYSQL_ROOT_PASSWORD
  file_env MYSQL_PASSWORD
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


@functools.cache
def debian_version(package: str) -> str:
    """The upstream version of bookworm main's ``package`` (what debootstrap installs)."""
    proc = run(["apt-cache", "madison", package], check=False)
    for line in proc.stdout.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) == 3 and f" {BASE_SUITE}/main " in f" {cols[2]} ":
            version = cols[1].split(":", 1)[-1]
            return version.split("-", 1)[0].split("+", 1)[0]
    return "unknown"


def mariadb_version() -> str:
    return debian_version("mariadb-server")


def ensure_image(image: Image, say: Callable[[str], None] = print) -> Path:
    if image.tarball.is_file():
        return image.tarball
    images_dir().mkdir(parents=True, exist_ok=True)
    with file_lock(images_dir() / f".{image.repo}.lock"):
        if image.tarball.is_file():
            return image.tarball
        t0 = time.monotonic()
        if image.builder is not None:
            image.builder(image.tarball, image.ref, say)
        else:
            _layered_image(image, say)
        # Older tags of the same image (the project image of older checkouts) pile up; one
        # untouched for a day is dead (another checkout may still be using a newer one).
        for old in images_dir().glob(f"{image.repo}_*.oci.tar"):
            if old != image.tarball and old.stat().st_mtime < time.time() - 86400:
                old.unlink(missing_ok=True)
        say(f"kube-images: {image.ref} in {time.monotonic() - t0:.0f} s")
    return image.tarball


def _layered_image(image: Image, say: Callable[[str], None]) -> None:
    """Base layer (if any), a layer of the image's files, its extra layer."""
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


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:])
    images = image_set()
    for name in names or list(images):
        try:
            path = ensure_image(images[name], lambda m: print(m, flush=True))
        except (KubeBuildError, ImageBuildError, CommandError) as exc:
            print(f"kube-images: {name}: {exc}", file=sys.stderr)
            return 1
        print(f"kube-images: {images[name].ref}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
