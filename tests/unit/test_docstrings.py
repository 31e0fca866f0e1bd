"""Every public name the API reference renders has a docstring of its own, and so does
every public method and property of its classes (an override may inherit its base's).

The reference (mkdocs.yml, docs/api/*.md) is generated from docstrings, and mkdocs' strict
build fails on broken links and references but not on a name without a docstring; this
test does. The modules are the ones the reference pages render (``::: module`` lines), and
the names are their ``__all__``, so a new page or a new export is covered at once.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
from pathlib import Path

import pytest

API_PAGES = Path(__file__).resolve().parents[2] / "docs" / "api"
_DIRECTIVE = re.compile(r"^::: ([\w.]+)", re.M)


def _modules() -> list[str]:
    found = {m for page in API_PAGES.glob("*.md") for m in _DIRECTIVE.findall(page.read_text())}
    return sorted(found)


def _own_docstring(obj: object) -> str | None:
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        # dataclasses write "Name(field: type, ...)" when the class has no docstring
        if doc and dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return None
        return doc
    return getattr(obj, "__doc__", None)


def test_the_reference_renders_every_public_package() -> None:
    assert {"spire_fabric.identity", "spire_fabric.tls", "spire_fabric.testing"} <= set(
        _modules()
    )


@pytest.mark.parametrize("module_name", _modules())
def test_every_public_name_of_a_reference_page_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"
    missing = [
        name
        for name in getattr(module, "__all__", ())
        if (inspect.isclass(obj := getattr(module, name)) or inspect.isfunction(obj))
        and not (_own_docstring(obj) or "").strip()
    ]
    assert not missing, f"{module_name}: no docstring on {', '.join(missing)}"


def _undocumented_members(cls: type) -> list[str]:
    missing = []
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        func = attr.fget if isinstance(attr, property) else attr
        func = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
        if not inspect.isfunction(func):
            continue
        if (func.__doc__ or "").strip() or (inspect.getdoc(getattr(cls, name)) or "").strip():
            continue
        missing.append(f"{cls.__name__}.{name}")
    return missing


@pytest.mark.parametrize("module_name", _modules())
def test_every_public_method_of_a_reference_page_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [
        member
        for name in getattr(module, "__all__", ())
        if inspect.isclass(cls := getattr(module, name)) and not issubclass(cls, enum.Enum)
        for member in _undocumented_members(cls)
    ]
    assert not missing, f"{module_name}: no docstring on {', '.join(missing)}"
