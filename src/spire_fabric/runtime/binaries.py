"""Find or provision real spire-server/spire-agent binaries of one pinned SPIRE release.

Everything that runs SPIRE (tests, the local runtime, CI) goes through `ensure_spire` so
the version under test is always the pinned one, and a machine without SPIRE gets it
without manual steps. Order: explicit dir, PATH, user cache, release download, Go build.
Downloads and builds are staged next to the cache, verified, then renamed into place
under a file lock, so concurrent callers (pytest workers) never see a half-written cache.

CLI (CI uses it to log the SPIRE version the tests run against):
    python -m spire_fabric.runtime.binaries [--bin-dir DIR] [--no-download] [--no-build]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from spire_fabric._filelock import file_lock
from spire_fabric._run import CommandError, run
from spire_fabric.errors import SpireFabricError
from spire_fabric.runtime._download import DownloadError, download_release, release_base_url
from spire_fabric.runtime._gobuild import GoBuildError, build_with_go, cache_root, staged_install

SPIRE_VERSION = "1.13.3"
BIN_DIR_ENV = "SPIRE_FABRIC_BIN_DIR"
_NAMES = ("spire-server", "spire-agent")
_VERSION_TIMEOUT_S = 15.0

__all__ = [
    "BIN_DIR_ENV",
    "SPIRE_VERSION",
    "SpireBinaries",
    "SpireBinariesError",
    "ensure_spire",
    "main",
    "spire_cache_dir",
]


@dataclass(frozen=True)
class SpireBinaries:
    """Paths of a verified spire-server/spire-agent pair and where they came from."""

    server: Path
    agent: Path
    version: str
    source: str  # "explicit dir" | "PATH" | "cache" | "download" | "go build"


class SpireBinariesError(SpireFabricError, RuntimeError):
    """No usable SPIRE binaries; the message lists each step tried, why it failed, the fix."""


def spire_cache_dir(version: str = SPIRE_VERSION) -> Path:
    """Per-user cache directory for one SPIRE version (XDG_CACHE_HOME is honoured)."""
    return cache_root() / f"spire-{_normalize(version)}"


def ensure_spire(
    bin_dir: str | Path | None = None,
    *,
    version: str = SPIRE_VERSION,
    allow_download: bool = True,
    allow_build: bool = True,
) -> SpireBinaries:
    """Return verified binaries of `version`, provisioning them into the cache if needed.

    An explicit directory (argument or SPIRE_FABRIC_BIN_DIR) is a promise from the caller:
    if it is wrong we raise instead of quietly running some other SPIRE.
    """
    version = _normalize(version)
    explicit, origin = _explicit_dir(bin_dir)
    if explicit is not None:
        problem = _pair_problem(explicit / _NAMES[0], explicit / _NAMES[1], version)
        if problem:
            raise SpireBinariesError(
                f"{origin} does not hold SPIRE {version}: {problem}. Fix: put "
                f"spire-server and spire-agent {version} there, or unset it to let "
                "spire_fabric find, download or build them."
            )
        return _found(explicit, version, "explicit dir")

    tried = [f"explicit dir: none given (argument bin_dir or env {BIN_DIR_ENV})"]
    found = _from_path(version, tried)
    if found is not None:
        return found
    cache = spire_cache_dir(version)
    if not _pair_problem(cache / _NAMES[0], cache / _NAMES[1], version):
        return _found(cache, version, "cache")
    lock = cache.parent / f".{cache.name}.lock"
    try:
        with file_lock(lock, on_wait=lambda m: _say(f"provisioning {cache.name}: {m}")):
            found = _provision(cache, version, tried, allow_download, allow_build)
    except OSError as exc:  # the lock file itself: cache parent missing rights, full disk
        tried.append(f"cache {cache}: cannot lock {cache.parent} ({exc})")
        found = None
    if found is not None:
        return found
    raise SpireBinariesError(_no_binaries_message(version, tried))


def _provision(
    cache: Path, version: str, tried: list[str], allow_download: bool, allow_build: bool
) -> SpireBinaries | None:
    """Fill the cache by download, else by Go build; the caller holds the cache lock."""
    # Another process may have filled the cache while we waited for the lock.
    problem = _pair_problem(cache / _NAMES[0], cache / _NAMES[1], version)
    if not problem:
        return _found(cache, version, "cache")
    tried.append(f"cache {cache}: {problem}")
    for step, allowed, provider in (
        ("download", allow_download, _provide_download),
        ("go build", allow_build, _provide_build),
    ):
        if not allowed:
            tried.append(f"{step}: disabled by the caller")
            continue
        _say(f"SPIRE {version} not in PATH or cache; trying {step}")
        try:
            _stage_and_install(cache, version, provider)
        except (DownloadError, GoBuildError, _VerifyError, OSError) as exc:
            tried.append(f"{step}: {exc}")
            _say(f"{step} failed: {exc}")
            continue
        return _found(cache, version, step)
    return None


def _normalize(version: str) -> str:
    return version.strip().removeprefix("v")


def _explicit_dir(bin_dir: str | Path | None) -> tuple[Path | None, str]:
    if bin_dir is not None and str(bin_dir) != "":
        path = Path(bin_dir).expanduser()
        return path, f"bin_dir {path}"
    env = os.environ.get(BIN_DIR_ENV, "")
    if env:
        path = Path(env).expanduser()
        return path, f"{BIN_DIR_ENV}={path}"
    return None, ""


def _found(directory: Path, version: str, source: str) -> SpireBinaries:
    server, agent = (directory / name for name in _NAMES)
    return SpireBinaries(
        server=server.absolute(), agent=agent.absolute(), version=version, source=source
    )


def _from_path(version: str, tried: list[str]) -> SpireBinaries | None:
    located = [shutil.which(name) for name in _NAMES]
    missing = [name for name, path in zip(_NAMES, located, strict=True) if path is None]
    if missing:
        tried.append(f"PATH: {' and '.join(missing)} not found")
        return None
    server, agent = (Path(p) for p in located if p is not None)
    problem = _pair_problem(server, agent, version)
    if problem:
        tried.append(f"PATH: {problem}")
        return None
    return SpireBinaries(
        server=server.absolute(), agent=agent.absolute(), version=version, source="PATH"
    )


def _pair_problem(server: Path, agent: Path, version: str) -> str | None:
    """Why this pair is unusable, or None; each binary must report exactly `version`."""
    problems = [p for p in (_binary_problem(server, version), _binary_problem(agent, version)) if p]
    return "; ".join(problems) or None


def _binary_problem(path: Path, version: str) -> str | None:
    if not path.exists():
        return f"{path} is missing"
    if not path.is_file():
        return f"{path} is not a regular file"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable (chmod +x it)"
    reported = _reported_version(path)
    if reported == version:
        return None
    if reported.startswith(f"{version}-dev-"):
        return (
            f"{path} reports {reported!r}, a development build without the release tag "
            f"stamped in; want exactly {version!r}"
        )
    return f"{path} reports version {reported!r}, want {version!r}"


def _reported_version(path: Path) -> str:
    """First line SPIRE prints for --version (it writes it to stderr, via mitchellh/cli)."""
    try:
        proc = run([str(path), "--version"], timeout=_VERSION_TIMEOUT_S, check=False)
    except CommandError as exc:
        cause = exc.__cause__
        if isinstance(cause, subprocess.TimeoutExpired):
            return f"<no answer to --version within {_VERSION_TIMEOUT_S:g}s>"
        return f"<cannot run: {getattr(cause, 'strerror', None) or cause or exc}>"
    for line in (proc.stderr + "\n" + proc.stdout).splitlines():
        if line.strip():
            return line.strip()
    return f"<nothing printed, exit {proc.returncode}>"


class _VerifyError(Exception):
    """Freshly provisioned binaries do not report the wanted version."""


def _provide_download(version: str, staging: Path) -> str:
    download_release(version, staging, _say)
    return f"downloaded from {release_base_url()}"


def _provide_build(version: str, staging: Path) -> str:
    return f"built with {build_with_go(version, staging, _say)}"


def _stage_and_install(cache: Path, version: str, provider: Callable[[str, Path], str]) -> None:
    """Provision into a private sibling dir, verify it, then rename it over `cache`
    (`staged_install`: the caller holds the cache lock)."""
    started = time.monotonic()

    def fill(staging: Path) -> str:
        how = provider(version, staging)
        problem = _pair_problem(staging / _NAMES[0], staging / _NAMES[1], version)
        if problem:
            raise _VerifyError(f"provisioned binaries failed verification: {problem}")
        return how

    how = staged_install(cache, fill)
    _say(f"SPIRE {version} {how} into {cache} in {time.monotonic() - started:.1f}s")


def _no_binaries_message(version: str, tried: list[str]) -> str:
    steps = "\n".join(f"  {i}. {step}" for i, step in enumerate(tried, 1))
    return (
        f"no usable SPIRE {version} spire-server/spire-agent; tried:\n{steps}\n"
        "Fix one of: put both binaries of that release in a directory and set "
        f"{BIN_DIR_ENV}; allow HTTPS to github.com (or mirror the release assets and set "
        "SPIRE_FABRIC_RELEASE_URL to the .../releases/download base); install Go >= 1.25 "
        "with access to a Go module proxy."
    )


def _say(message: str) -> None:
    print(f"spire-fabric: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Ensure the binaries and print which SPIRE will be used; exit 1 with the reason if none."""
    parser = argparse.ArgumentParser(
        prog="python -m spire_fabric.runtime.binaries",
        description=f"Find, download or build SPIRE {SPIRE_VERSION} binaries.",
    )
    parser.add_argument("--bin-dir", help=f"directory holding both binaries (or {BIN_DIR_ENV})")
    parser.add_argument("--no-download", action="store_true", help="never download a release")
    parser.add_argument("--no-build", action="store_true", help="never build with Go")
    args = parser.parse_args(argv)
    try:
        found = ensure_spire(
            args.bin_dir, allow_download=not args.no_download, allow_build=not args.no_build
        )
    except SpireBinariesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"SPIRE {found.version} ({found.source}): {found.server}, {found.agent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
