"""What application code imports from the package root resolves to the rooms' objects, and
the public API of the client rooms is listed name by name, with every signature.

tests/unit/public_api.txt is that listing; a change to a public name or signature shows up
as a diff of it (regenerate with `UPDATE_PUBLIC_API=1 pytest tests/unit/test_public_api.py`).
The sync and async clients are listed side by side, so a twin that drifts shows too.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import os
from pathlib import Path

import spire_fabric
from spire_fabric import tls, workload

LISTING = Path(__file__).with_name("public_api.txt")

# The rooms whose public faces are listed (the others belong to the deployment side).
MODULES = [
    "spire_fabric",
    "spire_fabric.identity",
    "spire_fabric.workload",
    "spire_fabric.tls",
    "spire_fabric.federation",
    "spire_fabric.server",
    "spire_fabric.agent",
    "spire_fabric.entries",
    "spire_fabric.metrics",
]


def _signature(obj: object) -> str:
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"
    params = []
    for param in sig.parameters.values():
        text = param.name
        if param.kind is param.VAR_POSITIONAL:
            text = "*" + text
        elif param.kind is param.VAR_KEYWORD:
            text = "**" + text
        if param.default is not param.empty:
            default = param.default
            if callable(default):
                shown = default.__qualname__
            elif isinstance(default, (frozenset, set)):
                shown = "{" + ", ".join(sorted(map(repr, default))) + "}"
            else:
                shown = repr(default)
            text += "=" + shown
        params.append((param.kind, text))
    out: list[str] = []
    seen_star = False
    for index, (kind, text) in enumerate(params):
        if kind is inspect.Parameter.KEYWORD_ONLY and not seen_star:
            out.append("*")
            seen_star = True
        if kind is inspect.Parameter.VAR_POSITIONAL:
            seen_star = True
        out.append(text)
        is_last_positional_only = kind is inspect.Parameter.POSITIONAL_ONLY and (
            index + 1 == len(params) or params[index + 1][0] is not kind
        )
        if is_last_positional_only:
            out.append("/")
    return "(" + ", ".join(out) + ")"


def _kind(obj: object) -> str:
    if inspect.iscoroutinefunction(obj):
        return "async def"
    if inspect.isasyncgenfunction(obj):
        return "async gen"
    return "def"


def _members(cls: type) -> list[str]:
    lines = []
    for name, value in sorted(vars(cls).items()):
        if name.startswith("_") and name not in {
            "__init__",
            "__enter__",
            "__exit__",
            "__aenter__",
            "__aexit__",
            "__iter__",
            "__next__",
            "__aiter__",
            "__anext__",
            "__call__",
        }:
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            lines.append(f"    {name}: property")
        elif inspect.isfunction(value):
            lines.append(f"    {_kind(value)} {name}{_signature(value)}")
    return lines


def listing() -> str:
    lines: list[str] = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines.append(f"[{module_name}]")
        for name in sorted(module.__all__):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                origin = f"{obj.__module__.rsplit('.', 1)[0]}.{obj.__qualname__}"
                if issubclass(obj, BaseException):
                    bases = ", ".join(base.__name__ for base in obj.__bases__)
                    lines.append(f"{name}: exception({bases}) from {origin}")
                    continue
                if issubclass(obj, enum.Enum):
                    lines.append(f"{name}: enum from {origin}")
                    continue
                lines.append(f"{name}: class from {origin}")
                lines.extend(_members(obj))
            elif inspect.isfunction(obj):
                lines.append(f"{name}: {_kind(obj)}{_signature(obj)}")
            else:
                lines.append(f"{name}: {type(obj).__name__}")
        for name, home in sorted(getattr(module, "_MOVED", {}).items()):
            lines.append(f"{name}: moved to {home} (deprecated alias here)")
        for name, new_name in sorted(getattr(module, "_RENAMED", {}).items()):
            lines.append(f"{name}: renamed {new_name} (deprecated alias here)")
        lines.append("")
    return "\n".join(lines)


def test_public_api_listing_is_current() -> None:
    current = listing()
    if os.environ.get("UPDATE_PUBLIC_API"):
        LISTING.write_text(current, encoding="utf-8")
    expected = LISTING.read_text(encoding="utf-8")
    assert current == expected, (
        "the public API changed; if that is intended, regenerate tests/unit/public_api.txt "
        "with UPDATE_PUBLIC_API=1 and review its diff"
    )


def test_root_exports_resolve_to_the_same_objects() -> None:
    for name in spire_fabric.__all__:
        assert getattr(spire_fabric, name) is not None, name
    assert spire_fabric.X509Source is workload.X509Source
    assert spire_fabric.mtls_server_context is tls.mtls_server_context


def test_unknown_root_attribute_is_an_attribute_error() -> None:
    try:
        spire_fabric.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:
        raise AssertionError("expected AttributeError")
