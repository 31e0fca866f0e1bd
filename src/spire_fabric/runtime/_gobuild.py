"""Build spire-server and spire-agent from the tagged Go module.

Two routes, because Go module proxies differ. `go install ...@vX.Y.Z` is the documented
way, but it asks the proxy for the module's version list (to look up deprecations), and
some proxies/mirrors refuse that list with 403 while serving the tagged module itself.
`go mod download -json` of the exact version, followed by `go build` inside the module
directory, needs only the tagged module and its dependency graph.

Both routes stamp the release version into the binaries the way SPIRE's Makefile does
(`-X .../version.gittag=X.Y.Z`); without it they report "X.Y.Z-dev-unk" and would not
pass the exact-version check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from spire_fabric.errors import SpireFabricError

MODULE = "github.com/spiffe/spire"
_VERSION_VAR = f"{MODULE}/pkg/common/version.gittag"
_BUILD_TIMEOUT_S = 3600.0
_TAIL_LINES = 6


class GoBuildError(SpireFabricError):
    """Building failed; the message names each route tried and the tail of Go's output."""


def _ldflags(version: str) -> str:
    return f"-ldflags=-s -w -X {_VERSION_VAR}={version}"


def build_with_go(version: str, dest: Path, say: Callable[[str], None]) -> str:
    """Put spire-server and spire-agent built from source into `dest`; return the route used.

    `dest` is a private staging directory the caller deletes on failure.
    """
    go = shutil.which("go")
    if go is None:
        raise GoBuildError("`go` is not on PATH")
    failures: list[str] = []
    say(f"go install {MODULE}/cmd/{{spire-server,spire-agent}}@v{version} (may take minutes)")
    try:
        _go_install(go, version, dest)
        return "go install"
    except GoBuildError as exc:
        failures.append(f"go install: {exc}")
        say(f"go install failed ({exc}); trying go mod download + go build in the module dir")
    try:
        _go_build_in_module(go, version, dest)
        return "go mod download + go build"
    except GoBuildError as exc:
        failures.append(f"go mod download + go build: {exc}")
    raise GoBuildError("; ".join(failures))


def _go_install(go: str, version: str, dest: Path) -> None:
    pkgs = [f"{MODULE}/cmd/{name}@v{version}" for name in ("spire-server", "spire-agent")]
    env = {**os.environ, "GOBIN": str(dest)}
    _run([go, "install", "-trimpath", _ldflags(version), *pkgs], env=env, cwd=dest)


def _go_build_in_module(go: str, version: str, dest: Path) -> None:
    out = _run([go, "mod", "download", "-json", f"{MODULE}@v{version}"], cwd=dest)
    try:
        info = json.loads(out)
    except json.JSONDecodeError as exc:
        raise GoBuildError(f"`go mod download -json` printed no JSON: {_tail(out)}") from exc
    if info.get("Error") or not info.get("Dir"):
        raise GoBuildError(f"go mod download: {info.get('Error') or 'no module Dir reported'}")
    # -mod=mod: the module directory is read-only and its go.sum may lack entries that a
    # build from a fresh cache wants; let Go resolve them instead of failing.
    flags = f"{os.environ.get('GOFLAGS', '')} -mod=mod".strip()
    env = {**os.environ, "GOFLAGS": flags}
    cmd = [go, "build", "-trimpath", _ldflags(version), "-o", f"{dest}{os.sep}"]
    _run([*cmd, "./cmd/spire-server", "./cmd/spire-agent"], env=env, cwd=Path(info["Dir"]))


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GoBuildError(f"{' '.join(cmd[:3])}: {exc}") from exc
    if proc.returncode != 0:
        raise GoBuildError(f"exit {proc.returncode}: {_tail(proc.stderr or proc.stdout)}")
    return proc.stdout


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-_TAIL_LINES:]) or "(no output)"
