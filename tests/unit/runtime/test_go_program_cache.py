"""The one Go build-and-cache module: a program is built once per version, in a staging
directory renamed into place, and a failed build leaves nothing that looks finished. The
build step here writes files instead of running Go: what is under test is the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from spire_fabric.runtime._gobuild import GoBuildError, GoProgram, cache_root, ensure_built


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "spire-fabric"


def _program(calls: list[Path], version: str = "1.2.3", make: tuple[str, ...] = ("a", "b"),
             fail: bool = False) -> GoProgram:
    def build(v: str, dest: Path, work: Path) -> None:
        calls.append(dest)
        assert work.is_dir() and v == version
        if fail:
            (dest / "a").write_text("half")
            raise GoBuildError("go build ./cmd/a: exit 1: boom")
        for name in make:
            (dest / name).write_text("#!/bin/sh\n")
            (dest / name).chmod(0o755)

    return GoProgram("tool", version, ("a", "b"), build)


def _entries() -> list[str]:
    return sorted(p.name for p in cache_root().iterdir())


def test_a_program_is_built_once_per_version_into_its_own_directory() -> None:
    calls: list[Path] = []
    said: list[str] = []
    bin_dir = ensure_built(_program(calls), said.append)
    assert bin_dir == cache_root() / "tool-1.2.3" / "bin"
    assert ensure_built(_program(calls), said.append) == bin_dir
    assert len(calls) == 1 and os.access(bin_dir / "b", os.X_OK)
    stamp = json.loads((bin_dir.parent / "built.json").read_text())
    assert (stamp["version"], stamp["binaries"]) == ("1.2.3", ["a", "b"])
    assert _entries() == [".tool-1.2.3.lock", "tool-1.2.3"]
    assert any("built tool 1.2.3" in m for m in said)
    # a new version builds beside the old one, never over it
    ensure_built(_program(calls, version="1.2.4"), said.append)
    assert len(calls) == 2
    assert (cache_root() / "tool-1.2.3" / "bin" / "a").is_file()


def test_a_failed_build_leaves_no_cache_and_no_staging() -> None:
    calls: list[Path] = []
    with pytest.raises(GoBuildError, match="boom"):
        ensure_built(_program(calls, fail=True), lambda m: None)
    assert _entries() == [".tool-1.2.3.lock"]
    assert not calls[0].exists()


def test_a_build_that_makes_too_little_is_refused_naming_what_is_missing() -> None:
    with pytest.raises(GoBuildError, match=r"tool 1.2.3: the build made no b"):
        ensure_built(_program([], make=("a",)), lambda m: None)
    assert _entries() == [".tool-1.2.3.lock"]


def test_a_directory_without_a_matching_stamp_is_rebuilt() -> None:
    calls: list[Path] = []
    program = _program(calls)
    (program.bin_dir).mkdir(parents=True)
    for name in ("a", "b"):
        (program.bin_dir / name).write_text("old")
        (program.bin_dir / name).chmod(0o755)
    (program.cache_dir / "built.json").write_text(json.dumps({"version": "1.2.2"}))
    ensure_built(program, lambda m: None)
    assert len(calls) == 1
    assert (program.bin_dir / "a").read_text() == "#!/bin/sh\n"
