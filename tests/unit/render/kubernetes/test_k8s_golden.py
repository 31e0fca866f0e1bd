"""The manifests users get are pinned, so every change shows up in review.

They live at tests/golden/<preset>/kubernetes/kubernetes/<cluster>/<file>, i.e. exactly
where ``render --target kubernetes -o tests/golden/<preset>/kubernetes`` writes them, which
keeps the configs' golden test (tests/unit/render/test_golden.py) and its stale-file check
agreeing with these files. Regenerate with SPIRE_FABRIC_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spire_fabric.render.kubernetes import render_kubernetes_manifests
from spire_fabric.topology import PRESET_NAMES, preset

ROOT = Path(__file__).resolve().parents[4]
UPDATE = os.environ.get("SPIRE_FABRIC_UPDATE_GOLDEN") == "1"


def golden_dir(name: str) -> Path:
    return ROOT / "tests" / "golden" / name / "kubernetes" / "kubernetes"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_manifests_match_golden(name):
    base = golden_dir(name)
    files = render_kubernetes_manifests(preset(name))
    if UPDATE:
        for p in base.rglob("*"):
            if p.is_file() and p.relative_to(base).as_posix() not in files:
                p.unlink()
        for rel, text in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_text(text, encoding="utf-8")
        return
    on_disk = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    assert on_disk == set(files), "golden set differs; SPIRE_FABRIC_UPDATE_GOLDEN=1"
    for rel, text in files.items():
        expected = (base / rel).read_text(encoding="utf-8")
        assert text == expected, f"{base / rel} differs; review, then SPIRE_FABRIC_UPDATE_GOLDEN=1"
