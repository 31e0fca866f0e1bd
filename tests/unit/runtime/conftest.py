"""Fixtures for SPIRE binary provisioning tests.

The fake spire-server/spire-agent scripts below only answer `--version` (on stderr, as the
real binaries do). They stand in for SPIRE because these tests are about provisioning
logic (which directory wins, checksums, locking), not about SPIRE's behaviour.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spire_fabric.runtime._download import asset_names
from spire_fabric.runtime.binaries import SPIRE_VERSION

SYSTEM_PATH = "/usr/bin:/bin"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME/cache and a PATH without SPIRE or Go, so the real machine never leaks in."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    monkeypatch.delenv("SPIRE_FABRIC_BIN_DIR", raising=False)
    # A port nothing listens on: any unexpected download fails at once.
    monkeypatch.setenv("SPIRE_FABRIC_RELEASE_URL", "http://127.0.0.1:9/none")
    return tmp_path


def fake_binary_script(version_line: str) -> str:
    return f"#!/bin/sh\necho '{version_line}' >&2\nexit 0\n"


def write_fake_spire(directory: Path, version_line: str = SPIRE_VERSION) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("spire-server", "spire-agent"):
        path = directory / name
        path.write_text(fake_binary_script(version_line))
        path.chmod(0o755)
    return directory


def make_tarball(members: dict[str, bytes], version: str = SPIRE_VERSION) -> bytes:
    """A gzip tarball with the given member names and contents (mode 0755)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def release_tarball(version: str = SPIRE_VERSION, reported: str | None = None) -> bytes:
    """A tarball laid out like SPIRE's: spire-<v>/bin/{spire-server,spire-agent}."""
    script = fake_binary_script(reported or version).encode()
    return make_tarball(
        {
            f"spire-{version}/LICENSE": b"Apache-2.0\n",
            f"spire-{version}/bin/spire-server": script,
            f"spire-{version}/bin/spire-agent": script,
        }
    )


def sha256sum_line(data: bytes, name: str) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()


@dataclass
class ReleaseServer:
    """A 127.0.0.1 stand-in for github.com/.../releases/download."""

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    delay_s: dict[str, float] = field(default_factory=dict)

    def publish(
        self, tarball: bytes, checksum: bytes | None = None, version: str = SPIRE_VERSION
    ) -> tuple[str, str]:
        """Serve `tarball` and its checksum file under /v<version>/; return both names."""
        tar_name, sum_name = asset_names(version)
        self.files[f"/v{version}/{tar_name}"] = tarball
        self.files[f"/v{version}/{sum_name}"] = (
            checksum if checksum is not None else sha256sum_line(tarball, tar_name)
        )
        return tar_name, sum_name

    def count(self, suffix: str) -> int:
        return sum(1 for path in self.requests if path.endswith(suffix))


@pytest.fixture
def release_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReleaseServer]:
    state: ReleaseServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "not published")
                return
            for suffix, delay in state.delay_s.items():
                if self.path.endswith(suffix):
                    time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A client killed between connecting and being accepted (the racing-download tests)
    # left a blocking accept() waiting forever, and shutdown() with it: never block there.
    server.socket.setblocking(False)
    state = ReleaseServer(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("SPIRE_FABRIC_RELEASE_URL", state.base_url)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_fake_go(directory: Path, *, install_fails: bool, build_fails: bool = False) -> Path:
    """A `go` that mimics the two build routes; it records its argv in go-calls.log.

    Needed because the real proxy failure (403 on the version list) cannot be produced on
    demand; the real route is covered by tests/integration/test_real_spire_binaries.py.
    """
    directory.mkdir(parents=True, exist_ok=True)
    moddir = directory / "moddir"
    moddir.mkdir(exist_ok=True)
    log = directory / "go-calls.log"
    script = directory / "go"
    script.write_text(
        f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open({str(log)!r}, "a") as f:
    f.write(json.dumps({{"args": args, "cwd": os.getcwd(),
                         "goflags": os.environ.get("GOFLAGS", "")}}) + "\\n")
def put(out_dir, version):
    for name in ("spire-server", "spire-agent"):
        p = Path(out_dir) / name
        p.write_text({fake_binary_script("@V@")!r}.replace("@V@", version))
        p.chmod(0o755)
version = next(a.split("gittag=")[1] for a in args if "gittag=" in a) if any(
    "gittag=" in a for a in args) else "1.13.3-dev-unk"
if args[0] == "install":
    if {install_fails!r}:
        sys.stderr.write("go: loading deprecation for github.com/spiffe/spire: reading "
                         "https://proxy.golang.org/github.com/spiffe/spire/@v/list: "
                         "403 Forbidden\\n")
        sys.exit(1)
    put(os.environ["GOBIN"], version)
elif args[:2] == ["mod", "download"]:
    print(json.dumps({{"Path": "github.com/spiffe/spire", "Dir": {str(moddir)!r}}}))
elif args[0] == "build":
    if {build_fails!r}:
        sys.stderr.write("cmd/spire-server/main.go:1: build exploded\\n")
        sys.exit(1)
    put(args[args.index("-o") + 1], version)
else:
    sys.exit(2)
"""
    )
    script.chmod(0o755)
    return log


class Fakes:
    """The helpers above, handed to tests as a fixture (conftest is not importable)."""

    script = staticmethod(fake_binary_script)
    spire = staticmethod(write_fake_spire)
    tarball = staticmethod(make_tarball)
    release_tarball = staticmethod(release_tarball)
    sha256sum_line = staticmethod(sha256sum_line)
    go = staticmethod(write_fake_go)


@pytest.fixture
def fakes() -> type[Fakes]:
    return Fakes
