"""Placeholders in a workload's run description, resolved per target.

Why placeholders and not literal values: a workload's arguments name things that only the
target knows (where another workload listens, its local port after ``--port-base``, its
Service address on Kubernetes). The topology says *which* workload and *what* about it; the
target fills in *where*. One syntax, ``{key}`` or ``{key:workload}``, so a YAML author can
read it and validation can check every reference before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from spire_fabric.errors import SpireFabricError

__all__ = [
    "PLACEHOLDER_KEYS",
    "Placeholder",
    "PlaceholderError",
    "expand",
    "expand_all",
    "placeholders",
]

# ``files``: the directory of the workload's managed files (``Deployment.workload_file``):
# locally <state>/workloads/<name>/files, on Kubernetes its ``<name>-files`` Secret, mounted
# read-only. Only a workload's own ({files}, never {files:other}).
# ``metrics_listen``: where the workload serves /metrics (its own ``run.metrics_port``).
PLACEHOLDER_KEYS = ("port", "listen", "spiffe_id", "url", "files", "metrics_listen")
_PATTERN = re.compile(r"\{([a-z_]+)(?::([^{}]*))?\}")


class PlaceholderError(SpireFabricError, ValueError):
    """A placeholder names an unknown key or workload; the message says which."""


@dataclass(frozen=True)
class Placeholder:
    """One ``{key}`` or ``{key:workload}`` in a workload's run text, resolved per target
    (a URL, port, socket path, ...) by `expand_placeholders`."""

    key: str  # one of PLACEHOLDER_KEYS
    workload: str | None  # None: the workload the text belongs to
    text: str  # as written, e.g. "{url:billing-api}"


def placeholders(text: str) -> list[Placeholder]:
    """Every placeholder in ``text``; unknown keys raise so typos are not passed through."""
    found = []
    for m in _PATTERN.finditer(text):
        key, target = m.group(1), m.group(2)
        if key not in PLACEHOLDER_KEYS:
            raise PlaceholderError(
                f"unknown placeholder {m.group(0)!r}; known: "
                + ", ".join("{" + k + "}" for k in PLACEHOLDER_KEYS)
            )
        found.append(Placeholder(key, target or None, m.group(0)))
    return found


def expand(text: str, value: Callable[[Placeholder], str]) -> str:
    """``text`` with each placeholder replaced by ``value(placeholder)``."""
    out, last = [], 0
    for p, m in zip(placeholders(text), _PATTERN.finditer(text), strict=True):
        out.append(text[last : m.start()])
        out.append(value(p))
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def expand_all(texts: Iterable[str], value: Callable[[Placeholder], str]) -> tuple[str, ...]:
    return tuple(expand(t, value) for t in texts)
