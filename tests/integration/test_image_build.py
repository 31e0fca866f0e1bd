"""`python -m spire_fabric.deploy image build` checked by a real consumer: containerd (the
runtime kind, k3d and our test clusters use) imports the archive, unpacks every layer
(checking the config's diff IDs) and, on the default Debian base, runs the example package
from the image.

containerd is our own throwaway instance (its own socket, root and state directories,
the native snapshotter, no CRI plugin), started here and stopped by its pid; it needs root
and Debian's containerd + runc (scripts/install-kube-deps installs them).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spire_fabric._wait import wait_until
from spire_fabric.runtime.images import SITE
from spire_fabric.runtime.images._debian import base_layer_path
from spire_fabric.runtime.images._oci import (
    LAYER_TYPE,
    Layer,
    files_layer,
    image_config,
    sha256_file,
    write_image,
)

pytestmark = pytest.mark.integration

HAVE_CONTAINERD = os.geteuid() == 0 and all(shutil.which(b) for b in ("containerd", "ctr", "runc"))
CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
"""


class Ctr:
    """`ctr` against our own containerd."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock

    def __call__(self, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            ["ctr", "--address", str(self.sock), "-n", "sf-image-test", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"ctr {' '.join(args)}: {proc.stderr.strip()}"
        return proc.stdout


@pytest.fixture(scope="module")
def ctr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctr]:
    if not HAVE_CONTAINERD:
        pytest.skip("needs root, containerd, ctr and runc (scripts/install-kube-deps)")
    d = tmp_path_factory.mktemp("ctrd")
    (d / "config.toml").write_text(CONFIG.format(d=d))
    log = open(d / "log", "wb")  # noqa: SIM115 (closed after the daemon stops)
    daemon = subprocess.Popen(
        ["containerd", "--config", str(d / "config.toml")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until(
            lambda: (d / "c.sock").exists(),
            30,
            "our containerd's socket",
            abort=lambda: None if daemon.poll() is None else "containerd exited",
        )
        yield Ctr(d / "c.sock")
    finally:
        daemon.terminate()
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
        log.close()


def build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spire_fabric.deploy", "image", "build", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_image_on_a_given_base_is_imported_and_unpacked_by_containerd(
    tmp_path: Path, ctr: Ctr
) -> None:
    # A tiny base as a registry tool hands it over: one gzip layer with a python3.11 and a
    # file, the config's PATH and command of its own.
    (tmp_path / "python3.11").write_text("#!/bin/sh\n")
    (tmp_path / "python3.11").chmod(0o755)
    (tmp_path / "marker").write_text("from the base\n")
    raw = files_layer(
        [
            ("usr/local/bin/python3.11", tmp_path / "python3.11"),
            ("etc/base-marker", tmp_path / "marker"),
        ],
        tmp_path / "base.layer",
    )
    gz = tmp_path / "base.layer.gz"
    gz.write_bytes(gzip.compress(raw.read_bytes(), mtime=0))
    layer = Layer(
        gz,
        LAYER_TYPE + "+gzip",
        "sha256:" + sha256_file(gz),
        gz.stat().st_size,
        "sha256:" + sha256_file(raw),
    )
    base = tmp_path / "base.tar"
    config = image_config([layer], cmd=["python3"], env=["PATH=/usr/local/bin:/usr/bin"])
    write_image(base, "example.org/tiny-python:1", [layer], config)
    out = tmp_path / "out" / "spire-fabric.tar"

    proc = build("--base", str(base), "-o", str(out), "--tag", "spire-fabric:it-test")
    assert proc.returncode == 0, proc.stderr
    assert "spire-fabric:it-test (Python 3.11" in proc.stdout
    assert "--image workload=spire-fabric:it-test" in proc.stdout
    with tarfile.open(out) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    name = index["manifests"][0]["annotations"]["io.containerd.image.name"]
    assert name == "docker.io/library/spire-fabric:it-test"

    ctr("images", "import", "--snapshotter", "native", str(out))
    assert name in ctr("images", "ls", "-q").split()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    ctr("images", "mount", "--snapshotter", "native", name, str(mnt))
    try:
        assert (mnt / "etc/base-marker").read_text() == "from the base\n"
        assert (mnt / SITE.lstrip("/") / "spire_fabric/__init__.py").is_file()
        assert (mnt / SITE.lstrip("/") / "spire_fabric/examples/security_gateway").is_dir()
        assert os.readlink(mnt / "usr/local/bin/python") == "/usr/local/bin/python3.11"
    finally:
        ctr("images", "unmount", str(mnt))


def test_a_base_that_is_not_an_archive_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "base.tar").write_text("not a tar")
    proc = build("--base", str(tmp_path / "base.tar"), "-o", str(tmp_path / "o.tar"))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: --base {tmp_path / 'base.tar'}: not a tar archive")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "o.tar").exists()


@pytest.mark.skipif(
    not base_layer_path().is_file() and os.geteuid() != 0,
    reason="the default Debian base is not built and needs root",
)
def test_default_image_runs_the_examples_package(tmp_path: Path, ctr: Ctr) -> None:
    out = tmp_path / "spire-fabric.tar"
    proc = build("-o", str(out), "--tag", "spire-fabric:it-run")
    assert proc.returncode == 0, proc.stderr
    ctr("images", "import", "--snapshotter", "native", str(out))
    code = (
        "import spire_fabric, spire_fabric.examples.security_gateway, sys; "
        "print(spire_fabric.__version__, sys.version_info[:2], spire_fabric.__file__)"
    )
    got = ctr(
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "docker.io/library/spire-fabric:it-run",
        "sf-image-run",
        "python",
        "-c",
        code,
        timeout=120,
    )
    from spire_fabric import __version__

    assert got.split() == [__version__, "(3,", "11)", f"{SITE}/spire_fabric/__init__.py"]
