"""Provisioning into the cache: release download (checksums, hostile tarballs), Go build
fallback, and two processes racing for the same cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spire_fabric.runtime import SPIRE_VERSION, SpireBinariesError, ensure_spire, spire_cache_dir
from spire_fabric.runtime._download import asset_names

# `fakes` and `release_server` come from conftest.py (helpers for fake binaries/releases).
Fakes = Any
SYSTEM_PATH = "/usr/bin:/bin"


def _cache_parent_entries() -> list[str]:
    parent = spire_cache_dir().parent
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def _reported(binary: Path) -> str:
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    return proc.stderr.strip()


def test_download_with_good_checksum_installs_into_cache(fakes: Fakes, release_server: Any) -> None:
    tar_name, sum_name = release_server.publish(fakes.release_tarball())

    first = ensure_spire(allow_build=False)
    second = ensure_spire(allow_build=False)

    cache = spire_cache_dir()
    assert (first.source, first.server, first.agent) == (
        "download",
        cache / "spire-server",
        cache / "spire-agent",
    )
    assert _reported(first.agent) == SPIRE_VERSION
    assert second.source == "cache"
    assert release_server.count(tar_name) == 1
    assert release_server.count(sum_name) == 1
    assert sorted(p.name for p in cache.iterdir()) == ["spire-agent", "spire-server"]
    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock", f"spire-{SPIRE_VERSION}"]


def test_download_replaces_a_cache_holding_another_version(
    fakes: Fakes, release_server: Any
) -> None:
    fakes.spire(spire_cache_dir(), version_line="1.12.0")
    release_server.publish(fakes.release_tarball())

    found = ensure_spire(allow_build=False)

    assert found.source == "download"
    assert _reported(found.server) == SPIRE_VERSION


def test_wrong_checksum_is_rejected_and_leaves_no_cache_or_temp_files(
    fakes: Fakes, release_server: Any
) -> None:
    tarball = fakes.release_tarball()
    wrong = hashlib.sha256(b"something else").hexdigest()
    tar_name, _ = asset_names(SPIRE_VERSION)
    release_server.publish(tarball, checksum=f"{wrong}  {tar_name}\n".encode())

    with pytest.raises(SpireBinariesError) as err:
        ensure_spire(allow_build=False)

    message = str(err.value)
    assert f"expected SHA-256 {wrong}" in message
    assert f"got {hashlib.sha256(tarball).hexdigest()}" in message
    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock"]


def test_checksum_file_without_an_entry_for_the_asset_is_rejected(
    fakes: Fakes, release_server: Any
) -> None:
    release_server.publish(fakes.release_tarball(), checksum=b"deadbeef  other.tar.gz\n")

    with pytest.raises(SpireBinariesError, match=r"has no SHA-256 entry for spire-1\.13\.3-"):
        ensure_spire(allow_build=False)


def test_corrupt_tarball_with_matching_checksum_is_rejected(
    fakes: Fakes, release_server: Any
) -> None:
    release_server.publish(b"\x1f\x8b\x08 this is not a gzip stream")

    with pytest.raises(SpireBinariesError, match=r"release tarball is corrupt"):
        ensure_spire(allow_build=False)
    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock"]


@pytest.mark.parametrize("evil_name", ["../escaped", "/tmp/absolute-escape", "a/../../escaped"])
def test_tarball_with_escaping_member_is_rejected(
    fakes: Fakes, release_server: Any, isolated_env: Path, evil_name: str
) -> None:
    script = fakes.script(SPIRE_VERSION).encode()
    members = {
        f"spire-{SPIRE_VERSION}/bin/spire-server": script,
        f"spire-{SPIRE_VERSION}/bin/spire-agent": script,
        evil_name: b"owned\n",
    }
    release_server.publish(fakes.tarball(members))

    with pytest.raises(SpireBinariesError) as err:
        ensure_spire(allow_build=False)

    assert f"member {evil_name!r} escapes the extraction directory" in str(err.value)
    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock"]


def test_tarball_without_the_agent_is_rejected(fakes: Fakes, release_server: Any) -> None:
    script = fakes.script(SPIRE_VERSION).encode()
    release_server.publish(fakes.tarball({f"spire-{SPIRE_VERSION}/bin/spire-server": script}))

    with pytest.raises(SpireBinariesError, match=r"release tarball has no bin/spire-agent"):
        ensure_spire(allow_build=False)


def test_downloaded_binaries_of_another_version_are_not_installed(
    fakes: Fakes, release_server: Any
) -> None:
    release_server.publish(fakes.release_tarball(reported="1.13.2"))

    with pytest.raises(
        SpireBinariesError, match=r"failed verification: .*reports version '1\.13\.2'"
    ):
        ensure_spire(allow_build=False)
    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock"]


def test_go_build_falls_back_to_module_build_when_go_install_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    log = fakes.go(tmp_path / "gobin", install_fails=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'gobin'}{os.pathsep}{SYSTEM_PATH}")

    found = ensure_spire(allow_download=False)

    assert found.source == "go build"
    assert _reported(found.server) == SPIRE_VERSION
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["args"][0] for c in calls] == ["install", "mod", "build"]
    stamp = f"-X github.com/spiffe/spire/pkg/common/version.gittag={SPIRE_VERSION}"
    assert any(stamp in arg for arg in calls[0]["args"])
    assert calls[2]["cwd"] == str(tmp_path / "gobin" / "moddir")
    assert "-mod=mod" in calls[2]["goflags"]
    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock", f"spire-{SPIRE_VERSION}"]


def test_go_install_is_used_when_it_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    log = fakes.go(tmp_path / "gobin", install_fails=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'gobin'}{os.pathsep}{SYSTEM_PATH}")

    found = ensure_spire(allow_download=False)

    assert found.source == "go build"
    assert [json.loads(line)["args"][0] for line in log.read_text().splitlines()] == ["install"]


def test_both_go_routes_failing_are_both_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    fakes.go(tmp_path / "gobin", install_fails=True, build_fails=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'gobin'}{os.pathsep}{SYSTEM_PATH}")

    with pytest.raises(SpireBinariesError) as err:
        ensure_spire(allow_download=False)

    message = str(err.value)
    assert "go install: exit 1: go: loading deprecation" in message
    assert "403 Forbidden" in message
    assert "go mod download + go build: exit 1: cmd/spire-server/main.go:1: build exploded" in (
        message
    )
    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock"]


def test_two_processes_racing_share_one_download_and_one_cache(
    fakes: Fakes, release_server: Any
) -> None:
    tar_name, _ = release_server.publish(fakes.release_tarball())
    # Slow download, so the second process certainly reaches the lock while the first
    # still holds it.
    release_server.delay_s[tar_name] = 1.5
    cmd = [sys.executable, "-m", "spire_fabric.runtime.binaries", "--no-build"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], results
    cache = spire_cache_dir()
    paths = {out.split(": ", 1)[1] for out, _ in results}
    assert paths == {f"{cache / 'spire-server'}, {cache / 'spire-agent'}\n"}
    sources = sorted(out.split("(")[1].split(")")[0] for out, _ in results)
    assert sources == ["cache", "download"]
    assert any("waiting for another process" in err for _, err in results)
    assert release_server.count(tar_name) == 1
    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock", f"spire-{SPIRE_VERSION}"]
    assert _reported(cache / "spire-server") == SPIRE_VERSION


def test_staging_dirs_left_by_a_killed_process_are_cleaned_up(
    fakes: Fakes, release_server: Any
) -> None:
    parent = spire_cache_dir().parent
    leftover = parent / f".spire-{SPIRE_VERSION}.staging-killed"
    leftover.mkdir(parents=True)
    (leftover / "spire-server").write_text("half written")
    release_server.publish(fakes.release_tarball())

    ensure_spire(allow_build=False)

    assert _cache_parent_entries() == [f".spire-{SPIRE_VERSION}.lock", f"spire-{SPIRE_VERSION}"]


def test_unusable_cache_location_is_named_in_the_error(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_dir = isolated_env / "cache-is-a-file"
    not_a_dir.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_dir))

    with pytest.raises(SpireBinariesError, match=r"cannot lock .*cache-is-a-file/spire-fabric"):
        ensure_spire()
