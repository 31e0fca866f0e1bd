"""Which SPIRE binaries ensure_spire picks: explicit dir, PATH, cache, and the final error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from spire_fabric.runtime import (
    SPIRE_VERSION,
    SpireBinaries,
    SpireBinariesError,
    ensure_spire,
    spire_cache_dir,
)
from spire_fabric.runtime.binaries import main

# `fakes` and `release_server` come from conftest.py (helpers for fake binaries/releases).
Fakes = Any
SYSTEM_PATH = "/usr/bin:/bin"


def _put_on_path(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{SYSTEM_PATH}")


def test_cache_dir_honours_xdg_cache_home(isolated_env: Path) -> None:
    assert spire_cache_dir("1.2.3") == isolated_env / "xdg-cache" / "spire-fabric" / "spire-1.2.3"


def test_cache_dir_falls_back_to_home_dot_cache(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    expected = isolated_env / "home" / ".cache" / "spire-fabric" / f"spire-{SPIRE_VERSION}"
    assert spire_cache_dir() == expected


def test_explicit_dir_wins_over_path_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    explicit = fakes.spire(tmp_path / "explicit")
    _put_on_path(monkeypatch, fakes.spire(tmp_path / "onpath"))
    fakes.spire(spire_cache_dir())

    found = ensure_spire(explicit)

    assert found == SpireBinaries(
        server=explicit / "spire-server",
        agent=explicit / "spire-agent",
        version=SPIRE_VERSION,
        source="explicit dir",
    )


def test_explicit_dir_is_read_from_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    explicit = fakes.spire(tmp_path / "from-env")
    monkeypatch.setenv("SPIRE_FABRIC_BIN_DIR", str(explicit))

    found = ensure_spire()

    assert (found.source, found.server) == ("explicit dir", explicit / "spire-server")


def test_explicit_dir_with_wrong_version_errors_instead_of_falling_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    explicit = fakes.spire(tmp_path / "old", version_line="1.12.0")
    _put_on_path(monkeypatch, fakes.spire(tmp_path / "onpath"))  # a good one exists

    with pytest.raises(SpireBinariesError) as err:
        ensure_spire(explicit)

    message = str(err.value)
    assert f"bin_dir {explicit}" in message
    assert "reports version '1.12.0', want '1.13.3'" in message


def test_explicit_dir_names_the_missing_file(tmp_path: Path, fakes: Fakes) -> None:
    explicit = fakes.spire(tmp_path / "half")
    (explicit / "spire-agent").unlink()

    with pytest.raises(SpireBinariesError, match=r"spire-agent is missing"):
        ensure_spire(explicit)


def test_explicit_dir_names_a_non_executable_binary(tmp_path: Path, fakes: Fakes) -> None:
    explicit = fakes.spire(tmp_path / "noexec")
    (explicit / "spire-server").chmod(0o644)

    with pytest.raises(SpireBinariesError, match=r"spire-server is not executable"):
        ensure_spire(explicit)


def test_explicit_dir_calls_a_dev_build_a_dev_build(tmp_path: Path, fakes: Fakes) -> None:
    explicit = fakes.spire(tmp_path / "dev", version_line=f"{SPIRE_VERSION}-dev-unk")

    with pytest.raises(SpireBinariesError, match=r"development build without the release tag"):
        ensure_spire(explicit)


def test_path_is_used_when_it_reports_the_pinned_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    onpath = fakes.spire(tmp_path / "onpath")
    _put_on_path(monkeypatch, onpath)

    found = ensure_spire(allow_download=False, allow_build=False)

    assert (found.source, found.agent) == ("PATH", onpath / "spire-agent")


def test_path_with_another_version_is_skipped_for_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    _put_on_path(monkeypatch, fakes.spire(tmp_path / "onpath", version_line="1.12.0"))
    cache = fakes.spire(spire_cache_dir())

    found = ensure_spire(allow_download=False, allow_build=False)

    assert (found.source, found.server) == ("cache", cache / "spire-server")


def test_cache_is_used_without_touching_the_network(fakes: Fakes, release_server: Any) -> None:
    fakes.spire(spire_cache_dir())

    found = ensure_spire()

    assert found.source == "cache"
    assert release_server.requests == []


def test_all_steps_failing_raise_one_error_listing_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: Fakes
) -> None:
    _put_on_path(monkeypatch, fakes.spire(tmp_path / "onpath", version_line="1.9.0"))

    with pytest.raises(SpireBinariesError) as err:
        ensure_spire()

    lines = str(err.value).splitlines()
    assert lines[1].startswith("  1. explicit dir: none given")
    assert lines[2].startswith("  2. PATH: ") and "reports version '1.9.0'" in lines[2]
    assert lines[3].startswith(f"  3. cache {spire_cache_dir()}: ") and "missing" in lines[3]
    assert lines[4].startswith("  4. download: GET http://127.0.0.1:9/none/v1.13.3/")
    assert lines[5] == "  5. go build: `go` is not on PATH"
    assert "SPIRE_FABRIC_BIN_DIR" in lines[6] and "Go >= 1.25" in lines[6]


def test_disabled_steps_are_reported_as_disabled() -> None:
    with pytest.raises(SpireBinariesError) as err:
        ensure_spire(allow_download=False, allow_build=False)

    message = str(err.value)
    assert "4. download: disabled by the caller" in message
    assert "5. go build: disabled by the caller" in message


def test_cli_prints_version_source_and_paths(
    fakes: Fakes, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = fakes.spire(spire_cache_dir())

    assert main(["--no-download", "--no-build"]) == 0

    out = capsys.readouterr().out
    assert out == (
        f"SPIRE {SPIRE_VERSION} (cache): {cache / 'spire-server'}, {cache / 'spire-agent'}\n"
    )


def test_cli_exits_1_with_the_error_when_nothing_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--bin-dir", str(tmp_path / "nowhere")]) == 1

    assert "spire-server is missing" in capsys.readouterr().err
