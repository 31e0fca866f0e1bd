"""Build programs from their Go modules, and cache what was built by name and version.

One module serves everything spire_fabric builds with Go: SPIRE for users (`binaries.py`),
and the development tools of the repository (the Kubernetes test clusters' etcd,
Kubernetes, kubectl, CoreDNS, spire-controller-manager; ghostunnel next). What they share:

- where builds are cached: `~/.cache/spire-fabric/<name>-<version>/` (XDG_CACHE_HOME
  honoured), so a version bump builds into a new directory and never reuses an old one;
- how a cache directory is filled: in a private staging directory beside it, then renamed
  into place under a file lock, so concurrent callers (pytest workers, two checkouts) never
  see half a build and a killed build leaves nothing that looks finished;
- how Go is run: `-mod=mod` where a module directory is built in place (it is read-only and
  its go.sum may lack entries a fresh cache wants), and a failure reported as one line with
  the step and the tail of Go's output.

SPIRE's two routes, because Go module proxies differ: `go install ...@vX.Y.Z` is the
documented way, but it asks the proxy for the module's version list (to look up
deprecations), and some proxies refuse that list with 403 while serving the tagged module
itself. `go mod download -json` of the exact version, followed by `go build` inside the
module directory, needs only the tagged module and its dependency graph. Both stamp the
release version into the binaries as SPIRE's Makefile does (`-X .../version.gittag=X.Y.Z`);
without it they report "X.Y.Z-dev-unk" and would not pass the exact-version check.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from spire_fabric._filelock import file_lock
from spire_fabric._run import run
from spire_fabric.errors import SpireFabricError

T = TypeVar("T")

MODULE = "github.com/spiffe/spire"
_VERSION_VAR = f"{MODULE}/pkg/common/version.gittag"
BUILD_TIMEOUT_S = 3600.0
_SPIRE_TAIL_LINES = 6
STAMP = "built.json"

__all__ = [
    "GoBuildError",
    "GoProgram",
    "build_with_go",
    "cache_root",
    "ensure_built",
    "go_binary",
    "go_env",
    "module_dir",
    "run_go",
    "staged_install",
]


class GoBuildError(SpireFabricError, RuntimeError):
    """Building failed; the message names each step tried and the tail of Go's output."""


def cache_root() -> Path:
    """`~/.cache/spire-fabric` (XDG_CACHE_HOME honoured): every cached build lives here."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "spire-fabric"


def go_binary() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoBuildError("`go` is not on PATH")
    return go


def go_env(module_mode: bool = True, **extra: str) -> dict[str, str]:
    """The environment for a Go command; `module_mode` adds `-mod=mod` to GOFLAGS."""
    env = {**os.environ, **extra}
    if module_mode:
        env["GOFLAGS"] = f"{os.environ.get('GOFLAGS', '')} -mod=mod".strip()
    return env


def run_go(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
    tail_lines: int = 12,
) -> str:
    """Run `go <args>` in `cwd` (default environment: `go_env()`); return its stdout."""
    proc = run(
        [go_binary(), *args],
        cwd=cwd,
        env=env if env is not None else go_env(),
        timeout=BUILD_TIMEOUT_S,
        what=what or f"go {' '.join(args[:2])}",
        tail_lines=tail_lines,
        error=GoBuildError,
    )
    return proc.stdout


def module_dir(path: str, version: str, work: Path, *, what: str | None = None) -> Path:
    """Download module `path` at `version` (with or without its `v`) into Go's module
    cache and return its (read-only) directory."""
    ref = f"{path}@v{version.removeprefix('v')}"
    step = what or f"go mod download {ref}"
    out = run_go(["mod", "download", "-json", ref], cwd=work, what=step,
                 tail_lines=_SPIRE_TAIL_LINES)
    try:
        info = json.loads(out)
    except json.JSONDecodeError as exc:
        raise GoBuildError(f"{step}: printed no JSON: {out.strip()[-300:]}") from exc
    if info.get("Error") or not info.get("Dir"):
        raise GoBuildError(f"{step}: {info.get('Error') or 'no module Dir reported'}")
    return Path(info["Dir"])


# ------------------------------------------------------------------- the cache


def staged_install(target: Path, fill: Callable[[Path], T]) -> T:
    """Fill a private directory beside `target` with `fill`, then rename it over `target`.

    The caller holds `target`'s lock. A directory rename is atomic, so readers that do not
    take the lock see either no `target` or a complete one; `fill` raising leaves nothing.
    Staging directories of killed processes (`.<name>.staging-*`) are removed first.
    """
    prefix = f".{target.name}.staging-"
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f"{prefix}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        result = fill(staging)
        staging.chmod(0o755)
        if target.exists() or target.is_symlink():
            # Moved aside first, so the rename never targets a half-deleted directory.
            aside = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
            os.replace(target, aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        os.replace(staging, target)
        return result
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class GoProgram:
    """Programs built from Go modules into one cache directory, `<name>-<version>/bin`.

    `build(version, bin_dir, work_dir)` puts `binaries` into `bin_dir`; `work_dir` is a
    scratch directory (a wrapper module's go.mod) removed afterwards. A `built.json` stamp
    records what was built and how long it took; a directory without it is not a build.
    """

    name: str
    version: str
    binaries: tuple[str, ...]
    build: Callable[[str, Path, Path], None]

    @property
    def cache_dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    @property
    def bin_dir(self) -> Path:
        return self.cache_dir / "bin"

    def is_built(self) -> bool:
        try:
            data = json.loads((self.cache_dir / STAMP).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("version") == self.version and all(
            os.access(self.bin_dir / b, os.X_OK) for b in self.binaries
        )


def ensure_built(program: GoProgram, say: Callable[[str], None] = print) -> Path:
    """Return `program`'s bin directory, building it first if the cache lacks it."""
    if program.is_built():
        return program.bin_dir
    lock = cache_root() / f".{program.name}-{program.version}.lock"
    with file_lock(lock, on_wait=lambda m: say(f"go-build: {m}")):
        if program.is_built():
            return program.bin_dir

        def fill(staging: Path) -> float:
            (staging / "bin").mkdir()
            (staging / "work").mkdir()
            say(f"go-build: building {program.name} {program.version} (cold: minutes)")
            t0 = time.monotonic()
            program.build(program.version, staging / "bin", staging / "work")
            seconds = round(time.monotonic() - t0, 1)
            shutil.rmtree(staging / "work", ignore_errors=True)
            missing = [b for b in program.binaries if not os.access(staging / "bin" / b, os.X_OK)]
            if missing:
                raise GoBuildError(f"{program.name} {program.version}: the build made no "
                                   f"{', '.join(missing)}")
            stamp = {"version": program.version, "binaries": list(program.binaries),
                     "seconds": seconds}
            (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            return seconds

        seconds = staged_install(program.cache_dir, fill)
        say(f"go-build: built {program.name} {program.version} in {seconds} s")
    return program.bin_dir


# ------------------------------------------------------------------- SPIRE


def _ldflags(version: str) -> str:
    return f"-ldflags=-s -w -X {_VERSION_VAR}={version}"


def build_with_go(version: str, dest: Path, say: Callable[[str], None]) -> str:
    """Put spire-server and spire-agent built from source into `dest`; return the route used.

    `dest` is a private staging directory the caller deletes on failure.
    """
    go_binary()
    failures: list[str] = []
    say(f"go install {MODULE}/cmd/{{spire-server,spire-agent}}@v{version} (may take minutes)")
    try:
        _go_install(version, dest)
        return "go install"
    except GoBuildError as exc:
        failures.append(str(exc))
        say(f"go install failed ({exc}); trying go mod download + go build in the module dir")
    try:
        _go_build_in_module(version, dest)
        return "go mod download + go build"
    except GoBuildError as exc:
        failures.append(str(exc))
    raise GoBuildError("; ".join(failures))


def _go_install(version: str, dest: Path) -> None:
    pkgs = [f"{MODULE}/cmd/{name}@v{version}" for name in ("spire-server", "spire-agent")]
    run_go(["install", "-trimpath", _ldflags(version), *pkgs], cwd=dest,
           env=go_env(module_mode=False, GOBIN=str(dest)), what="go install",
           tail_lines=_SPIRE_TAIL_LINES)


def _go_build_in_module(version: str, dest: Path) -> None:
    step = "go mod download + go build"
    src = module_dir(MODULE, version, dest, what=step)
    run_go(["build", "-trimpath", _ldflags(version), "-o", f"{dest}{os.sep}",
            "./cmd/spire-server", "./cmd/spire-agent"], cwd=src, what=step,
           tail_lines=_SPIRE_TAIL_LINES)
