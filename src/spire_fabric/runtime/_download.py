"""Fetch an official SPIRE release tarball, check its published SHA-256, unpack two binaries.

Asset and checksum names follow SPIRE's own release script,
spiffe/spire `.github/workflows/scripts/build_linux_artifacts.sh` (build_artifact()):

    artifact = spire-${TAG}-linux-${arch}-musl.tar.gz          (arch: amd64, arm64)
    checksum = spire-${TAG}-linux-${arch}-musl_sha256sum.txt   (`shasum -a 256` output:
               "<hex>  spire-${TAG}-linux-${arch}-musl.tar.gz")
    tar root = spire-${TAG}/bin/{spire-server,spire-agent}

and `build_artifacts.sh`, which sets TAG to the release tag without its leading "v".
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from spire_fabric.errors import SpireFabricError

RELEASE_URL_ENV = "SPIRE_FABRIC_RELEASE_URL"
DEFAULT_RELEASE_URL = "https://github.com/spiffe/spire/releases/download"

# The checksum is fetched first with a short timeout so an unreachable host fails in
# seconds; the tarball (~60 MB) gets a longer per-read timeout once the host answered.
CONNECT_TIMEOUT_S = 5.0
TRANSFER_TIMEOUT_S = 60.0

BINARY_NAMES = ("spire-server", "spire-agent")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class DownloadError(SpireFabricError):
    """A download step failed; the message is one line fit for the final step list."""


def release_base_url() -> str:
    return os.environ.get(RELEASE_URL_ENV, "").strip().rstrip("/") or DEFAULT_RELEASE_URL


def asset_names(version: str) -> tuple[str, str]:
    """Return (tarball, checksum file) names for this machine, or raise DownloadError."""
    system, machine = platform.system(), platform.machine().lower()
    arch = _ARCH.get(machine)
    if system != "Linux" or arch is None:
        raise DownloadError(
            f"SPIRE publishes release tarballs for linux/amd64 and linux/arm64 only, "
            f"this machine is {system}/{machine}"
        )
    stem = f"spire-{version}-linux-{arch}-musl"
    return f"{stem}.tar.gz", f"{stem}_sha256sum.txt"


def download_release(version: str, dest: Path, say: Callable[[str], None]) -> str:
    """Put verified spire-server and spire-agent into `dest`; return the tarball URL.

    `dest` must be an empty private staging directory: everything written here is the
    caller's to delete when this raises.
    """
    tarball, checksum_name = asset_names(version)
    base = f"{release_base_url()}/v{version}"
    tar_url, sum_url = f"{base}/{tarball}", f"{base}/{checksum_name}"
    expected = _expected_sha256(_fetch_text(sum_url), tarball, sum_url)
    say(f"downloading {tar_url}")
    archive = dest / ".release.tar.gz"
    actual = _fetch_to_file(tar_url, archive)
    if actual != expected:
        raise DownloadError(
            f"{tar_url} failed its checksum: expected SHA-256 {expected} "
            f"(from {sum_url}), got {actual}; the file is corrupt or was tampered with"
        )
    try:
        extract_binaries(archive, dest)
    finally:
        archive.unlink(missing_ok=True)
    return tar_url


def _fetch_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as resp:
            body: bytes = resp.read(64 * 1024)
            return body.decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"GET {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"GET {url}: {reason}") from exc


def _fetch_to_file(url: str, target: Path) -> str:
    digest = hashlib.sha256()
    try:
        with (
            urllib.request.urlopen(url, timeout=TRANSFER_TIMEOUT_S) as resp,
            target.open("wb") as out,
        ):
            while chunk := resp.read(1024 * 1024):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"GET {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"GET {url}: {reason}") from exc
    return digest.hexdigest()


def _expected_sha256(text: str, tarball: str, url: str) -> str:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for fields in lines:
        if len(fields) >= 2 and fields[1].lstrip("*") == tarball and _SHA256_HEX.match(fields[0]):
            return fields[0].lower()
    if len(lines) == 1 and len(lines[0]) == 1 and _SHA256_HEX.match(lines[0][0]):
        return lines[0][0].lower()
    raise DownloadError(f"checksum file {url} has no SHA-256 entry for {tarball}")


def extract_binaries(archive: Path, dest: Path) -> None:
    """Copy the two binaries out of `archive` into `dest`, refusing hostile archives.

    Only the two regular files are written, under fixed names, so no member name ever
    becomes a path on disk; an archive that carries a traversal name is still refused
    whole, because nothing else in a tampered release can be trusted either.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _refuse_unsafe(member)
            for name in BINARY_NAMES:
                member = _find_binary(members, name)
                src = tar.extractfile(member)
                if src is None:  # pragma: no cover - isfile() was checked
                    raise DownloadError(f"{archive.name}: cannot read member {member.name}")
                target = dest / name
                with src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
                target.chmod(0o755)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DownloadError(f"release tarball is corrupt ({type(exc).__name__}: {exc})") from exc


def _refuse_unsafe(member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if member.name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts:
        raise DownloadError(
            f"release tarball refused: member {member.name!r} escapes the extraction "
            "directory (absolute path or '..')"
        )
    if (member.issym() or member.islnk()) and (
        member.linkname.startswith("/") or ".." in PurePosixPath(member.linkname).parts
    ):
        raise DownloadError(
            f"release tarball refused: link {member.name!r} points outside the archive "
            f"({member.linkname!r})"
        )


def _find_binary(members: list[tarfile.TarInfo], name: str) -> tarfile.TarInfo:
    for member in members:
        parts = PurePosixPath(member.name).parts
        if len(parts) >= 2 and parts[-2:] == ("bin", name):
            if not member.isfile():
                raise DownloadError(f"release tarball member {member.name} is not a regular file")
            return member
    raise DownloadError(f"release tarball has no bin/{name}")
