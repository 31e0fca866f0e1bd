"""Rendered output is pinned in tests/golden/ (and docs/architecture.md) so any change to
what users get shows up in review. Regenerate with SPIRE_FABRIC_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spire_fabric.deploy.render import render_files
from spire_fabric.render import render_mermaid
from spire_fabric.topology import PRESET_NAMES, TARGETS, preset

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden"
DOC = ROOT / "docs" / "architecture.md"
LOCAL_STATE_DIR = "/var/lib/spire-fabric"
UPDATE = os.environ.get("SPIRE_FABRIC_UPDATE_GOLDEN") == "1"


def architecture_doc() -> str:
    """docs/architecture.md, built from the live render so it cannot drift."""
    head = (ROOT / "tests" / "golden" / "architecture.head.md").read_text(encoding="utf-8")
    return f"{head}\n```mermaid\n{render_mermaid(preset('enterprise'))}```\n"


def _check(path: Path, actual: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"missing golden {path}; run with SPIRE_FABRIC_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path} differs; review, then SPIRE_FABRIC_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_rendered_files_match_golden(name, target):
    files = render_files(preset(name), target, LOCAL_STATE_DIR)
    base = GOLDEN / name / target
    for rel, text in files.items():
        if rel.startswith("kubernetes/"):
            continue  # owned by the Kubernetes renderer's own goldens
        _check(base / rel, text)
    if not UPDATE:
        on_disk = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
        stale = on_disk - set(files)
        assert not stale, f"golden files no longer rendered: {sorted(stale)}"


def test_architecture_doc_contains_exactly_the_current_enterprise_diagram():
    _check(DOC, architecture_doc())
