"""A package's names imported on first use (PEP 562), written once for every package.

Why: `import spire_fabric` and `import spire_fabric.identity` must stay cheap for a
workload or a short CLI run that uses one corner of them (the `entries` CLI's start-up is
measured against SPIRE's Go CLI). The names stay where users import them from; each
module behind them loads when one of its names is first looked up, and is then kept in
the package's namespace so later lookups bypass the hook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, namespace: dict[str, Any], lazy: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: ``lazy`` maps each
    name to the module that defines it (absolute, or relative to ``package``)."""

    def __getattr__(name: str) -> object:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value  # later lookups find it without this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__
