"""ghostunnel is provided at the pinned version from the Go build cache, and a cached binary
that reports another release is refused, naming the directory to remove. The "binary" here
is a script answering `--version` as ghostunnel does (on stderr); what is under test is the
provisioning, not ghostunnel (the real one runs in the sidecar tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spire_fabric.runtime.ghostunnel import (
    GHOSTUNNEL_VERSION,
    GhostunnelError,
    ensure_ghostunnel,
    ghostunnel_program,
)


def _cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reports: str) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    program = ghostunnel_program()
    program.bin_dir.mkdir(parents=True)
    binary = program.bin_dir / "ghostunnel"
    binary.write_text(f"#!/bin/sh\necho 'rev {reports} built with go1.26.8' >&2\n")
    binary.chmod(0o755)
    (program.cache_dir / "built.json").write_text(json.dumps(
        {"version": GHOSTUNNEL_VERSION, "binaries": ["ghostunnel"], "seconds": 1.0}))
    return binary


def test_the_pinned_release_is_taken_from_the_cache_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _cached(tmp_path, monkeypatch, f"v{GHOSTUNNEL_VERSION}")
    said: list[str] = []
    assert ensure_ghostunnel(said.append) == binary
    assert binary.parent.parent.name == f"ghostunnel-{GHOSTUNNEL_VERSION}"
    assert said == []


def test_a_cached_binary_of_another_release_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _cached(tmp_path, monkeypatch, "v1.8.3")
    with pytest.raises(GhostunnelError, match=r"reports 'rev v1\.8\.3 .*expected ghostunnel "
                                              r"v1\.8\.4; remove .*ghostunnel-1\.8\.4"):
        ensure_ghostunnel(lambda m: None)
    assert binary.exists()  # refused, not deleted: the user decides
