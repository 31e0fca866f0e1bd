"""The version is written once (spire_fabric/_version.py) and everything reads it there."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from kube_harness._images import image_set

import spire_fabric
from spire_fabric import _version

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_and_the_build_read_the_one_version() -> None:
    assert spire_fabric.__version__ is _version.__version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["dynamic"]["version"] == {"attr": "spire_fabric._version.__version__"}


def test_the_project_image_is_tagged_with_the_version() -> None:
    tag = image_set()["spire-fabric"].tag
    assert tag.startswith(f"{_version.__version__}-py3.11-")


def test_the_changelog_has_a_section_for_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(_version.__version__)}\]", text, re.M)
    assert "## [Unreleased]" in text
